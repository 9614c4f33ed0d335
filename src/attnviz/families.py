"""What attnviz knows about each model family: the one registry the other modules read.

Chapters 11 and 12 explain the differences, diffing each family's attention against Llama's in the
transformers 5.24 source. Llama, Mistral, Qwen2 and Qwen3 share ``LlamaAttention``'s code; the
families differ in two places:

- the sliding window: none (Llama), every layer from the config at call time (Mistral), or per
  layer from ``config.layer_types`` kept on the module as ``sliding_window`` (Qwen2, Qwen3);
- QK-norm: Qwen3 normalises each head's query and key (``q_norm``, ``k_norm``) before RoPE.

Adding a family is one ``Family`` entry in ``FAMILIES`` (plus tests): the patches, probes,
capture and tiny builders all read it from here.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


def _window_on_module(attention: nn.Module) -> int | None:
    # Qwen2/Qwen3 keep their layer's window (or None) on the attention module itself.
    return attention.sliding_window


def _window_from_config(attention: nn.Module) -> int | None:
    # MistralAttention.forward passes getattr(self.config, "sliding_window", None) at call time.
    return getattr(attention.config, "sliding_window", None)


def _no_window(attention: nn.Module) -> None:
    return None


@dataclass(frozen=True)
class Family:
    """One model family: its classes, where its layers keep a window, and whether it has QK-norm."""

    name: str
    config_class: type
    backbone_class: type
    attention_class: type
    read_window: Callable[[nn.Module], int | None]
    qk_norm: bool = False
    # config fields that build the family with full attention in every layer
    no_window: dict = field(default_factory=dict)
    # config fields the book's tiny models set, beyond the shared sizes (Mistral's 4096-token
    # default window would hide behind every short input)
    tiny_defaults: dict = field(default_factory=dict)
    # the window is chosen per layer by config.layer_types
    layer_types: bool = False


def _classes(module: str, prefix: str) -> tuple[type, type, type] | None:
    """(config, backbone, attention) classes of one family, or None if this transformers lacks it.

    Older releases (the compatibility matrices run attnviz on 4.x) lack some families, e.g.
    Qwen3 before 4.51; the registry then simply holds fewer entries.
    """
    try:
        found = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
        config = importlib.import_module(f"transformers.models.{module}.configuration_{module}")
        return (
            getattr(config, f"{prefix}Config"),
            getattr(found, f"{prefix}Model"),
            getattr(found, f"{prefix}Attention"),
        )
    except (ImportError, AttributeError):
        return None


def _registry() -> dict[str, "Family"]:
    entries = [
        ("llama", "Llama", {"read_window": _no_window}),
        (
            "mistral",
            "Mistral",
            {
                "read_window": _window_from_config,
                "no_window": {"sliding_window": None},
                "tiny_defaults": {"sliding_window": None},
            },
        ),
        (
            "qwen2",
            "Qwen2",
            {
                "read_window": _window_on_module,
                "no_window": {"layer_types": None, "sliding_window": None},
                "layer_types": True,
            },
        ),
        (
            "qwen3",
            "Qwen3",
            {
                "read_window": _window_on_module,
                "qk_norm": True,
                "no_window": {"layer_types": None, "sliding_window": None},
                "layer_types": True,
            },
        ),
    ]
    registry = {}
    for name, prefix, fields in entries:
        classes = _classes(name, prefix)
        if classes is not None:
            registry[name] = Family(name, *classes, **fields)
    return registry


FAMILIES: dict[str, Family] = _registry()

# The backbones attnviz patches; wrappers such as LlamaForCausalLM keep one in `.model`.
SUPPORTED_BACKBONES: tuple[type[nn.Module], ...] = tuple(f.backbone_class for f in FAMILIES.values())


def family(name: str) -> Family:
    """The registry entry for ``name`` (llama, mistral, qwen2, qwen3)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; attnviz knows {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def _unsupported(model: nn.Module) -> ValueError:
    names = ", ".join(cls.__name__ for cls in SUPPORTED_BACKBONES)
    short = ", ".join(cls.__name__.removesuffix("Model") for cls in SUPPORTED_BACKBONES)
    message = (
        f"attnviz works on Llama-family models ({short}); got {type(model).__name__}. "
        f"Supported backbones: {names}, or a model that keeps one in `.model` (e.g. LlamaForCausalLM, "
        "Qwen3ForCausalLM, MistralForSequenceClassification)."
    )
    # PEFT keeps the transformers model two levels down: peft_model.base_model.model
    base = getattr(getattr(model, "base_model", None), "model", None)
    if base is not None and base is not model and _backbone_or_none(base) is not None:
        message += (
            f" This looks like a PEFT model: patch the transformers model it wraps, "
            f"`{type(model).__name__}.base_model.model` (a {type(base).__name__})."
        )
    return ValueError(message)


def _backbone_or_none(model: nn.Module) -> nn.Module | None:
    if isinstance(model, SUPPORTED_BACKBONES):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, SUPPORTED_BACKBONES):
        return inner
    return None


def find_backbone(model: nn.Module) -> nn.Module:
    """Return the Llama-family backbone of ``model``: the model itself, or its ``.model``.

    Raises:
        ValueError: for any other model, naming the supported families.
    """
    backbone = _backbone_or_none(model)
    if backbone is None:
        raise _unsupported(model)
    return backbone


def family_of(model: nn.Module) -> Family:
    """The registry entry of ``model``'s backbone."""
    backbone = find_backbone(model)
    return next(f for f in FAMILIES.values() if isinstance(backbone, f.backbone_class))


def layer_window(attention: nn.Module) -> int | None:
    """The sliding window (in tokens) of one attention module, or None for full attention."""
    for entry in FAMILIES.values():
        if isinstance(attention, entry.attention_class):
            return entry.read_window(attention)
    raise ValueError(
        f"{type(attention).__name__} is not the attention of a family attnviz knows "
        f"({', '.join(FAMILIES)}): it cannot tell where that module keeps its sliding window."
    )


def sliding_windows(model: nn.Module) -> dict[int, int]:
    """The sliding-window layers of ``model``'s backbone: ``{layer index: window in tokens}``.

    Empty for a model whose every layer attends to the whole sequence. Qwen2 and Qwen3 mark each
    layer in ``config.layer_types``; Mistral applies ``config.sliding_window`` to every layer.
    """
    backbone = find_backbone(model)
    windows = {}
    for index, layer in enumerate(backbone.layers[: backbone.config.num_hidden_layers]):
        window = layer_window(layer.self_attn)
        if window is not None:
            windows[index] = window
    return windows


def head_dim(config) -> int:
    """Features per head: ``config.head_dim``, or ``hidden_size // num_attention_heads`` without one."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def has_qk_norm(attention: nn.Module) -> bool:
    """Whether this attention module normalises queries and keys per head before RoPE (Qwen3)."""
    return getattr(attention, "q_norm", None) is not None
