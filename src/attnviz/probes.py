"""Probes that judge what a model does, not what its flags say.

Chapters 6 and 7 use them to show which "bidirectional" patches really are. Each probe runs the
backbone twice on made-up ``inputs_embeds`` and compares outputs:

- ``attends_to_future``: change only the last input; does any earlier output change? (Any, not
  just the first: in a sliding-window model the first output may be out of the last input's reach.)
- ``uses_positions``: permute the inputs; do the outputs do more than permute the same way?

A causal model without RoPE still uses positions: the causal mask itself depends on order.
"""

from dataclasses import dataclass

import torch
from torch import nn

from attnviz._versions import versions
from attnviz.families import find_backbone

# A difference counts only above this, relative to the size of the outputs. Float rounding on
# the same input gives ~1e-7 in float32; a real effect in a random tiny model is ~1e-1.
DEFAULT_RTOL = 1e-4
# In half precision the rounding itself is larger: permuting the inputs of a position-free model
# moved its outputs by up to 2.3 machine epsilons (relative to the output scale), while the
# smallest real effect was 26 epsilons (bf16, 64 tokens), measured over Llama shapes of 2-8 layers
# and hidden 128-576, eager and sdpa, 8 and 64 tokens. The threshold sits between: 8 epsilons.
EPS_FACTOR = 8
DEFAULT_SEQ_LEN = 8


def relative_tolerance(dtype: torch.dtype) -> float:
    """The probes' threshold relative to the output scale, for a model computing in ``dtype``."""
    return max(DEFAULT_RTOL, EPS_FACTOR * torch.finfo(dtype).eps)


@dataclass(frozen=True)
class ProbeReport:
    """The verdicts of both probes on one model, with the evidence and settings behind them."""

    model: str
    backend: str
    transformers: str
    attends_to_future: bool
    future_effect: float
    uses_positions: bool
    permutation_effect: float
    threshold: float
    seq_len: int
    dtype: str = "torch.float32"
    rtol: float = DEFAULT_RTOL

    def __str__(self) -> str:
        def verdict(flag: bool, yes: str, no: str) -> str:
            return yes if flag else no

        return "\n".join(
            [
                f"attnviz probe report: {self.model} (backend {self.backend}, transformers {self.transformers})",
                "  attends to the future: "
                + verdict(self.attends_to_future, "YES (bidirectional)", "no (causal)")
                + f"   changing the last input moved earlier outputs by {self.future_effect:.3g}",
                "  uses positions:        "
                + verdict(self.uses_positions, "YES (order matters)", "no (permutation-equivariant)")
                + f"   permuting the inputs changed the outputs by {self.permutation_effect:.3g}",
                f"  threshold: {self.threshold:.3g} (rtol {self.rtol:g} for {self.dtype} x output scale), "
                f"{self.seq_len} random inputs_embeds",
            ]
        )


def _probe_inputs(backbone: nn.Module, seq_len: int, seed: int) -> torch.Tensor:
    parameter = next(backbone.parameters())
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, seq_len, backbone.config.hidden_size, generator=generator)
    return embeds.to(device=parameter.device, dtype=parameter.dtype)


def _derangement(n: int, seed: int) -> torch.Tensor:
    """A fixed random order in which no position keeps its place."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        if not (order == torch.arange(n)).any():
            return order


def _run(backbone: nn.Module, embeds: torch.Tensor, use_cache: bool) -> torch.Tensor:
    return backbone(inputs_embeds=embeds, use_cache=use_cache).last_hidden_state.float()


def probe_report(
    model: nn.Module, seq_len: int = DEFAULT_SEQ_LEN, seed: int = 0, use_cache: bool = False
) -> ProbeReport:
    """Run both probes on ``model`` (a Llama-family model or a wrapper of one) and report.

    Every forward pass gets ``use_cache`` (default False, as a set encoder runs). With True, the
    model builds a fresh KV cache on each pass, as a plain ``model(...)`` call does by default, and
    on some transformers releases that changes the mask it builds (chapter 6). A model patched
    with ``attnviz.bidirectional`` refuses ``use_cache=True`` with a ``ValueError``.

    The model is run in eval mode (dropout would make the comparison meaningless) and put back
    in its previous mode afterwards. An effect counts when it exceeds ``relative_tolerance`` of
    the model's dtype times the output scale: 1e-4 in float32, 8 machine epsilons in float16 and
    bfloat16, where rounding alone moves outputs by a few epsilons. A real effect shrinks as the
    sequence grows; in bfloat16 keep ``seq_len`` at 64 or below.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 for the probes to mean anything; got {seq_len}.")
    backbone = find_backbone(model)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            embeds = _probe_inputs(backbone, seq_len, seed)
            base = _run(backbone, embeds, use_cache)

            changed = embeds.clone()
            changed[:, -1] = _probe_inputs(backbone, seq_len, seed + 1)[:, -1]
            future_effect = (_run(backbone, changed, use_cache)[:, :-1] - base[:, :-1]).abs().max().item()

            order = _derangement(seq_len, seed)
            permuted = _run(backbone, embeds[:, order], use_cache)
            permutation_effect = (permuted - base[:, order]).abs().max().item()
    finally:
        backbone.train(was_training)

    dtype = next(backbone.parameters()).dtype
    rtol = relative_tolerance(dtype)
    threshold = rtol * max(1.0, base.abs().max().item())
    return ProbeReport(
        model=type(model).__name__,
        backend=str(backbone.config._attn_implementation),
        transformers=versions(warn=False)["transformers"],
        attends_to_future=future_effect > threshold,
        future_effect=future_effect,
        uses_positions=permutation_effect > threshold,
        permutation_effect=permutation_effect,
        threshold=threshold,
        seq_len=seq_len,
        dtype=str(dtype),
        rtol=rtol,
    )


def attends_to_future(model: nn.Module, **kwargs) -> bool:
    """True if changing the last input changes an earlier output: the model attends both ways."""
    return probe_report(model, **kwargs).attends_to_future


def uses_positions(model: nn.Module, **kwargs) -> bool:
    """True if permuting the inputs does more than permute the outputs: order matters to the model."""
    return probe_report(model, **kwargs).uses_positions


def offset_score(weights: torch.Tensor, offset: int = -1) -> torch.Tensor:
    """Mean attention weight each head puts on the key ``offset`` positions from the query.

    ``weights`` is ``(batch, heads, q_len, k_len)``; returns ``(heads,)``. A previous-token head
    scores near 1 at ``offset=-1``. Queries without such a key (the first ones) are left out.
    """
    if weights.dim() != 4:
        raise ValueError(f"expected (batch, heads, q_len, k_len) weights; got shape {tuple(weights.shape)}.")
    q_len = weights.shape[-2]
    diagonal = torch.diagonal(weights, offset=offset, dim1=-2, dim2=-1)  # (batch, heads, q_len - |offset|)
    if diagonal.shape[-1] == 0:
        raise ValueError(f"offset {offset} leaves no query with a key in a sequence of {q_len}.")
    return diagonal.mean(dim=(0, -1))
