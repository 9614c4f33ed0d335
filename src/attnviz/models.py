"""Tiny Llama configs and models built in code, so nothing is downloaded.

Chapter 1 (``notebooks/01_llama_attention.ipynb``) builds its model with these.
"""

import torch
from transformers import LlamaConfig, LlamaModel


def _attn_implementations() -> list[str]:
    """eager plus every name registered in transformers' attention registry (yours included)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ["eager", *sorted(ALL_ATTENTION_FUNCTIONS.keys())]


def tiny_llama_config(**overrides) -> LlamaConfig:
    """Return the book's tiny ``LlamaConfig``: hidden 128, 4 query heads, 2 key/value heads, head_dim 32.

    Two layers, a 256-token vocabulary and eager attention. Any field can be overridden by
    keyword, e.g. ``tiny_llama_config(attn_implementation="sdpa", num_key_value_heads=4)``.

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
    fields.update(overrides)

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
    return LlamaConfig(**fields)


def tiny_llama(config: LlamaConfig | None = None, *, seed: int = 0, **overrides) -> LlamaModel:
    """Return a randomly initialised ``LlamaModel``.

    Args:
        config: the config to build; by default ``tiny_llama_config(**overrides)``.
        seed: the weights depend only on this; the global torch random state is left as it was.
        overrides: config fields, only when ``config`` is not given.

    The model is in eval mode, so dropout is off.
    """
    if config is None:
        config = tiny_llama_config(**overrides)
    elif overrides:
        raise ValueError(f"pass either a config or config fields, not both (got {sorted(overrides)}).")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaModel(config)
    return model.eval()
