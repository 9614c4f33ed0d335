"""Probes that judge what a model does, not what its flags say.

Chapter 6 uses them to show which "bidirectional" patches really are. Each probe runs the
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
from attnviz.patch import find_backbone

# A difference counts only above this, relative to the size of the outputs. Float rounding on
# the same input gives ~1e-7; a real effect in a random tiny model is ~1e-1.
DEFAULT_RTOL = 1e-4
DEFAULT_SEQ_LEN = 8


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
                f"  threshold: {self.threshold:.3g} (rtol {DEFAULT_RTOL:g} x output scale), "
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


def _run(backbone: nn.Module, embeds: torch.Tensor) -> torch.Tensor:
    return backbone(inputs_embeds=embeds, use_cache=False).last_hidden_state.float()


def probe_report(model: nn.Module, seq_len: int = DEFAULT_SEQ_LEN, seed: int = 0) -> ProbeReport:
    """Run both probes on ``model`` (a Llama-family model or a wrapper of one) and report.

    The model is run in eval mode (dropout would make the comparison meaningless) and put back
    in its previous mode afterwards.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 for the probes to mean anything; got {seq_len}.")
    backbone = find_backbone(model)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            embeds = _probe_inputs(backbone, seq_len, seed)
            base = _run(backbone, embeds)

            changed = embeds.clone()
            changed[:, -1] = _probe_inputs(backbone, seq_len, seed + 1)[:, -1]
            future_effect = (_run(backbone, changed)[:, :-1] - base[:, :-1]).abs().max().item()

            order = _derangement(seq_len, seed)
            permuted = _run(backbone, embeds[:, order])
            permutation_effect = (permuted - base[:, order]).abs().max().item()
    finally:
        backbone.train(was_training)

    threshold = DEFAULT_RTOL * max(1.0, base.abs().max().item())
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
    )


def attends_to_future(model: nn.Module, **kwargs) -> bool:
    """True if changing the last input changes an earlier output: the model attends both ways."""
    return probe_report(model, **kwargs).attends_to_future


def uses_positions(model: nn.Module, **kwargs) -> bool:
    """True if permuting the inputs does more than permute the outputs: order matters to the model."""
    return probe_report(model, **kwargs).uses_positions
