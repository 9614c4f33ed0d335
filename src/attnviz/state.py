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


def compat_rows() -> list[dict]:
    """Probe the three patches under eager and sdpa on the transformers installed here.

    One row per (patch, backend): the keys transformers, patch, backend, attends_to_future,
    uses_positions, refused and error. scripts/compat_matrix.py runs this in one environment per
    transformers version; chapter 6 runs it live and compares with the committed table.
    """
    import warnings
    from contextlib import ExitStack

    import transformers

    from attnviz.models import tiny_config, tiny_model
    from attnviz.patch import patched
    from attnviz.probes import probe_report

    rows = []
    for patch in COMPAT_PATCHES:
        for backend in COMPAT_BACKENDS:
            row = {
                "transformers": transformers.__version__,
                "patch": patch,
                "backend": backend,
                "attends_to_future": None,
                "uses_positions": None,
                "refused": False,
                "error": None,
            }
            try:
                with warnings.catch_warnings(), ExitStack() as stack:
                    warnings.simplefilter("ignore")  # deprecation chatter differs by version
                    config = tiny_config(attn_implementation=backend)
                    if patch == "seed":
                        model = seed_backbone(config).eval()
                    elif patch == "state_later":
                        model = state_later_patch(LlamaModel(config).eval())
                    else:
                        model = tiny_model("llama", config)
                        try:
                            stack.enter_context(patched(model, bidirectional=True, no_rope=True))
                        except RuntimeError as refusal:
                            row["refused"], row["error"] = True, str(refusal)
                            rows.append(row)
                            continue
                    report = probe_report(model)
                row["attends_to_future"] = report.attends_to_future
                row["uses_positions"] = report.uses_positions
            except Exception as error:  # a patch that crashes on a version is a result too
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            rows.append(row)
    return rows
