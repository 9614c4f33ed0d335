"""Tiny Llama-family configs and models built in code, so nothing is downloaded.

Chapter 1 (``notebooks/01_llama_attention.ipynb``) builds its Llama with these; chapter 9
(``notebooks/09_beyond_llama.ipynb``) builds Qwen2, Qwen3 and Mistral models of the same size.
"""

import torch
from transformers import (
    LlamaConfig,
    LlamaModel,
    MistralConfig,
    MistralModel,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2Model,
    Qwen3Config,
    Qwen3Model,
)

# family name -> (config class, backbone class). attnviz.patch supports exactly these backbones.
FAMILIES: dict[str, tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaModel),
    "mistral": (MistralConfig, MistralModel),
    "qwen2": (Qwen2Config, Qwen2Model),
    "qwen3": (Qwen3Config, Qwen3Model),
}


def _classes(family: str) -> tuple[type[PreTrainedConfig], type[PreTrainedModel]]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; attnviz builds {', '.join(FAMILIES)}.")
    return FAMILIES[family]


def _attn_implementations() -> list[str]:
    """eager plus every name registered in transformers' attention registry (yours included)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ["eager", *sorted(ALL_ATTENTION_FUNCTIONS.keys())]


def tiny_llama_config(**overrides) -> LlamaConfig:
    """The tiny Llama config; same as ``tiny_config("llama", **overrides)``."""
    return tiny_config("llama", **overrides)


def tiny_config(family: str = "llama", **overrides) -> PreTrainedConfig:
    """Return the book's tiny config of one family: hidden 128, 4 query heads, 2 key/value heads, head_dim 32.

    Two layers, a 256-token vocabulary and eager attention. ``family`` is one of ``FAMILIES``
    (llama, mistral, qwen2, qwen3). Any field can be overridden by keyword, e.g.
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
    config_class = _classes(family)[0]
    if family == "mistral":
        fields["sliding_window"] = None  # Mistral's default window (4096) would hide behind short inputs
    fields.update(overrides)
    layer_types = fields.get("layer_types")
    if family.startswith("qwen") and layer_types is not None:
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
    return config_class(**fields)


def tiny_llama(config: LlamaConfig | None = None, *, seed: int = 0, **overrides) -> LlamaModel:
    """Return a randomly initialised ``LlamaModel``; same as ``tiny_model("llama", ...)``."""
    return tiny_model("llama", config, seed=seed, **overrides)


def tiny_model(family: str = "llama", config: PreTrainedConfig | None = None, *, seed: int = 0, **overrides):
    """Return a randomly initialised backbone of one family (``LlamaModel``, ``Qwen3Model``, ...).

    Args:
        family: one of ``FAMILIES``.
        config: the config to build; by default ``tiny_config(family, **overrides)``.
        seed: the weights depend only on this; the global torch random state is left as it was.
        overrides: config fields, only when ``config`` is not given.

    The model is in eval mode, so dropout is off.
    """
    config_class, model_class = _classes(family)
    if config is None:
        config = tiny_config(family, **overrides)
    elif overrides:
        raise ValueError(f"pass either a config or config fields, not both (got {sorted(overrides)}).")
    if not isinstance(config, config_class):
        raise ValueError(f"a {family} model needs a {config_class.__name__}; got a {type(config).__name__}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()
