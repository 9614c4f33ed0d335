"""Tiny Llama-family configs and models built in code, so nothing is downloaded.

Chapter 1 (``notebooks/01_llama_attention.ipynb``) builds its Llama with these; chapter 11
(``notebooks/11_qk_norm.ipynb``) builds Qwen2, Qwen3 and Mistral models of the same size.
"""

from typing import TYPE_CHECKING

import torch

from attnviz.families import family

if TYPE_CHECKING:  # 4.x calls it PretrainedConfig; attnviz's measuring code must import on 4.x too
    from transformers import PreTrainedConfig, PreTrainedModel


def _attn_implementations() -> list[str]:
    """eager plus every name registered in transformers' attention registry (yours included)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ["eager", *sorted(ALL_ATTENTION_FUNCTIONS.keys())]


def tiny_config(name: str = "llama", **overrides) -> "PreTrainedConfig":
    """Return the book's tiny config of one family: hidden 128, 4 query heads, 2 key/value heads, head_dim 32.

    Two layers, a 256-token vocabulary and eager attention. ``name`` is a family of ``attnviz.FAMILIES``
    (llama, mistral, qwen2, qwen3; see ``attnviz.families``). Any field can be overridden by keyword, e.g.
    ``tiny_config("qwen3", layer_types=["full_attention", "sliding_attention"], sliding_window=4)``.

    Sliding windows are off unless asked for: Mistral's 4096-token default becomes ``None``, and
    Qwen's ``sliding_window`` is kept only for the layers ``layer_types`` marks as sliding
    (``use_sliding_window`` is switched on when ``layer_types`` names a sliding layer).

    ``initializer_range`` defaults to 0.1 instead of transformers' 0.02: with 0.02 the random
    queries and keys are so small that every attention row is nearly uniform, and the heatmaps
    show nothing but the mask.
    """
    fields = dict(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        initializer_range=0.1,
        attn_implementation="eager",
    )
    entry = family(name)
    fields.update(entry.tiny_defaults)
    fields.update(overrides)
    layer_types = fields.get("layer_types")
    if entry.layer_types and layer_types is not None:
        if len(layer_types) != fields["num_hidden_layers"]:
            raise ValueError(
                f"layer_types has {len(layer_types)} entries for {fields['num_hidden_layers']} layers; "
                "give one ('full_attention' or 'sliding_attention') per layer."
            )
        if "sliding_attention" in layer_types:
            fields.setdefault("use_sliding_window", True)
            if fields.get("sliding_window") is None:
                raise ValueError("layer_types names sliding layers: also pass sliding_window=<tokens>.")

    heads, kv_heads = fields["num_attention_heads"], fields["num_key_value_heads"]
    if heads % kv_heads:
        raise ValueError(
            f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads}): "
            "each key/value head serves a whole group of query heads."
        )
    known = _attn_implementations()
    if fields["attn_implementation"] not in known:
        raise ValueError(
            f"unknown attn_implementation {fields['attn_implementation']!r}; use one of {', '.join(known)}, "
            "or register your own with transformers.AttentionInterface.register."
        )
    if fields["attn_implementation"] == "flex_attention" and fields["head_dim"] < 32:
        raise ValueError(
            f"head_dim {fields['head_dim']} is below 32: PyTorch's CPU flex-attention kernel gives "
            "wrong numbers for some small shapes. Use head_dim >= 32 with flex_attention."
        )
    return entry.config_class(**fields)


def tiny_model(
    name: str = "llama", config: "PreTrainedConfig | None" = None, *, seed: int = 0, **overrides
) -> "PreTrainedModel":
    """Return a randomly initialised backbone of one family (``LlamaModel``, ``Qwen3Model``, ...).

    Args:
        name: a family of ``attnviz.FAMILIES`` (llama, mistral, qwen2, qwen3).
        config: the config to build; by default ``tiny_config(name, **overrides)``.
        seed: the weights depend only on this; the global torch random state is left as it was.
        overrides: config fields, only when ``config`` is not given.

    The model is in eval mode, so dropout is off.
    """
    entry = family(name)
    if config is None:
        config = tiny_config(name, **overrides)
    elif overrides:
        raise ValueError(f"pass either a config or config fields, not both (got {sorted(overrides)}).")
    if not isinstance(config, entry.config_class):
        raise ValueError(f"a {name} model needs a {entry.config_class.__name__}; got a {type(config).__name__}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.backbone_class(config)
    return model.eval()
