"""STATE's bidirectional patches, as published, rewritten in our own code for chapter 6.

Arc Institute's STATE model (https://github.com/ArcInstitute/state) turned a ``LlamaModel``
into a bidirectional, position-free backbone without editing transformers. Two versions exist:

- ``SeedBidirectionalModel``: the patch as first published (the blog post this project grew
  from quotes it). It overrides ``_update_causal_mask`` to return ``None``, passes
  ``is_causal=False`` to the parent forward, swaps in a cos = 1 / sin = 0 rotary module, and is
  used through ``inputs_embeds`` with a zeroed, frozen ``embed_tokens``.
- ``state_later_patch``: what STATE did later: ``config.is_causal = False``, every layer's
  ``self_attn.is_causal = False``, and an all-ones 4D float mask when none is given.

These reproduce behaviour across transformers versions (scripts/compat_matrix.py); they are
not what attnviz recommends. Use ``attnviz.bidirectional`` / ``attnviz.no_rope`` or
``attnviz.LlamaBidirectionalModel`` instead.
"""

from pathlib import Path

import torch
from torch import nn
from transformers import LlamaModel

from attnviz.families import head_dim


class SeedNoRoPE(nn.Module):
    """The seed's rotary replacement: cos = 1, sin = 0 shaped like the hidden states, (batch, seq, head_dim)."""

    def __init__(self, head_dim: int, hidden_size: int):
        super().__init__()
        self.head_dim = head_dim
        self.hidden_size = hidden_size

    def forward(self, hidden_states: torch.Tensor, position_ids: torch.LongTensor):
        batch_size, seq_len, _ = hidden_states.shape
        cos = hidden_states.new_ones(batch_size, seq_len, self.head_dim)
        sin = hidden_states.new_zeros(batch_size, seq_len, self.head_dim)
        return cos, sin


class SeedBidirectionalModel(LlamaModel):
    """The patch as first published: meant to make every token attend to every other.

    ``update_causal_mask_calls`` counts calls of the override, to show whether transformers
    still calls it (it does up to 4.52; the method is gone from 4.53).
    """

    update_causal_mask_calls = 0

    def __init__(self, config):
        super().__init__(config)
        self.rotary_emb = SeedNoRoPE(head_dim=head_dim(config), hidden_size=config.hidden_size)

    def _update_causal_mask(
        self, attention_mask, input_tensor, cache_position, past_key_values, output_attentions=False
    ):
        # "return None: no causal mask; only the caller's padding mask, handled by the kernels"
        type(self).update_causal_mask_calls += 1
        return None

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        cache_position=None,
        **flash_attn_kwargs,
    ):
        flash_attn_kwargs["is_causal"] = False
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            cache_position=cache_position,
            **flash_attn_kwargs,
        )


def seed_backbone(config) -> SeedBidirectionalModel:
    """The seed's backbone: the subclass with ``embed_tokens`` zeroed and frozen (fed by ``inputs_embeds``)."""
    model = SeedBidirectionalModel(config)
    model.embed_tokens.weight.requires_grad = False
    with torch.no_grad():
        model.embed_tokens.weight.zero_()
    return model


def state_later_patch(model: LlamaModel) -> LlamaModel:
    """STATE's later patch, applied to ``model`` in place (for good; it writes the shared config).

    Sets ``config.is_causal = False`` and every layer's ``self_attn.is_causal = False``, and makes
    the forward pass an all-ones ``(batch, 1, seq, seq)`` float mask when the caller gives none.
    The rotary module is swapped for ``SeedNoRoPE`` as in STATE's model class.
    """
    config = model.config
    model.rotary_emb = SeedNoRoPE(head_dim=head_dim(config), hidden_size=config.hidden_size)
    model.config.is_causal = False
    for layer in model.layers:
        layer.self_attn.is_causal = False
    inner = model.forward

    def forward(*args, **kwargs):
        if kwargs.get("attention_mask") is None:
            embeds = kwargs.get("inputs_embeds")
            reference = embeds if embeds is not None else kwargs.get("input_ids", args[0] if args else None)
            batch, seq = reference.shape[:2]
            dtype = embeds.dtype if embeds is not None else torch.float32
            kwargs["attention_mask"] = torch.ones(batch, 1, seq, seq, dtype=dtype, device=reference.device)
        return inner(*args, **kwargs)

    model.forward = forward
    return model


COMPAT_PATCHES = ("seed", "state_later", "attnviz")
COMPAT_BACKENDS = ("eager", "sdpa")
# False: how the probes (and STATE, `use_cache: false`) run a set encoder. True: LlamaConfig's
# default, what a plain model(...) call does; it changes the mask 4.57 builds (chapter 6).
COMPAT_USE_CACHE = (False, True)


class HarnessError(RuntimeError):
    """The measuring code itself failed: nothing about the patch under test can be concluded."""


def _mask_form(mask) -> str:
    """How a mask reached an attention layer: ``"None"``, ``"bool (1, 1, 8, 8)"``, ``"BlockMask"``."""
    if mask is None:
        return "None"
    if isinstance(mask, torch.Tensor):
        return f"{str(mask.dtype).removeprefix('torch.')} {tuple(mask.shape)}"
    return type(mask).__name__


def _raised_in(error: BaseException, module) -> bool:
    """Whether the innermost Python frame of ``error``'s traceback is in ``module``'s file."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename == module.__file__


# attnviz's measuring code, beside the harness functions of this module
_HARNESS_FILES = {
    str(Path(__file__).with_name(name)) for name in ("_versions.py", "families.py", "models.py", "probes.py")
}


def _raised_by_harness(error: BaseException) -> bool:
    """An exception whose innermost frame is attnviz's measuring code (not a patch, not transformers)."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return True
    innermost = frames[-1]
    if str(Path(innermost.filename)) in _HARNESS_FILES:
        return True
    # this module's harness functions (not the patches it reproduces)
    return innermost.filename == __file__ and innermost.name in _HARNESS_FUNCTIONS


def _build(patch: str, backend: str, stack):
    """One patch on a fresh tiny Llama. The patch is applied here, so what it raises propagates;
    attnviz's patch is undone when ``stack`` closes (the others patch for good)."""
    from attnviz.models import tiny_config, tiny_model
    from attnviz.patch import patched

    config = tiny_config(attn_implementation=backend)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if patch == "seed":
            return seed_backbone(config).eval()
        if patch == "state_later":
            return state_later_patch(LlamaModel(config).eval())
    model = tiny_model("llama", config)
    stack.enter_context(patched(model, bidirectional=True, no_rope=True))
    return model


def _layer0_inputs(model, use_cache: bool) -> tuple[str, bool | None]:
    """The mask form and the ``is_causal`` keyword (None when absent) layer 0's attention receives."""
    received = []
    attention = model.layers[0].self_attn
    handle = attention.register_forward_pre_hook(
        lambda module, args, kwargs: received.append((kwargs.get("attention_mask"), kwargs.get("is_causal"))),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            embeds = torch.randn(1, 8, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
            model(inputs_embeds=embeds, use_cache=use_cache)
    finally:
        handle.remove()
    if len(received) != 1:
        raise HarnessError(f"layer 0's attention was called {len(received)} times in one forward pass")
    mask, is_causal = received[0]
    return _mask_form(mask), is_causal


def _control(backend: str, use_cache: bool) -> None:
    """The harness works on this release: an unpatched tiny LlamaModel runs and probes as causal."""
    from attnviz.models import tiny_model
    from attnviz.probes import probe_report

    model = tiny_model("llama", attn_implementation=backend)
    if model.config._attn_implementation != backend:
        raise HarnessError(f"asked for {backend} attention, got {model.config._attn_implementation}")
    report = probe_report(model, use_cache=use_cache)
    if report.attends_to_future or not report.uses_positions:
        raise HarnessError(f"an unpatched LlamaModel ({backend}, use_cache={use_cache}) probed as {report}")


def _compat_row(patch: str, backend: str, use_cache: bool) -> dict:
    from contextlib import ExitStack

    import transformers

    from attnviz import patch as attnviz_patch
    from attnviz.probes import probe_report

    row = {
        "transformers": transformers.__version__,
        "patch": patch,
        "backend": backend,
        "use_cache": use_cache,
        "attends_to_future": None,
        "uses_positions": None,
        "refused": False,
        "error": None,
        "layer0_mask": None,
        "layer0_is_causal": None,
    }
    try:
        with ExitStack() as stack:
            model = _build(patch, backend, stack)
            row["layer0_mask"], row["layer0_is_causal"] = _layer0_inputs(model, use_cache)
            report = probe_report(model, use_cache=use_cache)
    except Exception as error:
        if _raised_by_harness(error):
            raise
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if patch == "attnviz":
            # attnviz's own code: only its deliberate refusals are results (too old a transformers,
            # or a KV cache); anything else is a bug in attnviz and fails the measurement
            if not (isinstance(error, (RuntimeError, ValueError)) and _raised_in(error, attnviz_patch)):
                raise
            row["refused"] = True
            row["error"] = str(error)
            return row
        row["error"] = message  # a patch reproduced from STATE crashed on this release: a result too
        return row
    row["attends_to_future"] = report.attends_to_future
    row["uses_positions"] = report.uses_positions
    return row


_HARNESS_FUNCTIONS = {"compat_rows", "_compat_row", "_build", "_layer0_inputs", "_control", "_mask_form", "<lambda>"}


def compat_rows() -> list[dict]:
    """Probe the three patches under eager and sdpa, without and with a KV cache, on the transformers installed here.

    One row per (patch, backend, use_cache), with the keys transformers, patch, backend, use_cache,
    attends_to_future, uses_positions, refused, error, and the evidence layer0_mask (the form of the
    mask layer 0's attention receives) and layer0_is_causal (the ``is_causal`` keyword it receives,
    None when absent). scripts/compat_matrix.py runs this in one environment per transformers
    version; chapter 6 runs it live and compares with the committed table.

    A row records an error only when the patch under test raised it (attnviz's patch: only its
    refusals). When the measuring code fails, or an unpatched model does not probe as causal, this
    raises instead: such a table would say nothing about the patches.
    """
    import warnings

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation chatter differs by version
        for backend in COMPAT_BACKENDS:
            for use_cache in COMPAT_USE_CACHE:
                _control(backend, use_cache)
        for patch in COMPAT_PATCHES:
            for backend in COMPAT_BACKENDS:
                for use_cache in COMPAT_USE_CACHE:
                    rows.append(_compat_row(patch, backend, use_cache))
    return rows
