"""Make one Llama-family model bidirectional and position-free without editing transformers.

Chapter 6 explains these on Llama; chapter 9 applies them to Mistral, Qwen2 and Qwen3, whose
backbones have the same ``rotary_emb`` attribute and the same ``is_causal`` handling.
Everything here acts on one model object and can be undone: nothing in transformers' modules
or classes is reassigned, and a config shared with other models is never written to by attnviz.

How it works on transformers >= 5.2 (the book pins 5.24):

- ``bidirectional`` passes ``is_causal=False`` to the backbone's forward on every call. The
  ``merge_with_config_defaults`` decorator of ``LlamaModel.forward`` then builds a
  bidirectional mask (``create_bidirectional_mask``; ``None`` for sdpa without padding, so no
  ``seq x seq`` tensor is made) and hands ``is_causal=False`` on to the sdpa and flash kernels.
- ``no_rope`` swaps the backbone's ``rotary_emb`` for ``NoRoPE``, whose cos = 1 and sin = 0
  make ``apply_rotary_pos_emb`` the identity.
"""

import warnings

import torch
import transformers
from packaging.version import Version
from torch import nn
from transformers import LlamaModel, MistralModel, Qwen2Model, Qwen3Model

# The first transformers release whose LlamaModel honours an is_causal=False keyword for every
# backend. Before it (4.53 - 5.1) the keyword reached sdpa but eager stayed causal, so
# `bidirectional` refuses to run there rather than patch half a model. scripts/compat_matrix.py
# measures this; pyproject.toml declares the same floor.
NATIVE_IS_CAUSAL = Version("5.2.0")


def _installed_transformers() -> str:
    return transformers.__version__


def _check_transformers() -> None:
    version = _installed_transformers()
    if Version(version) < NATIVE_IS_CAUSAL:
        raise RuntimeError(
            f"attnviz.bidirectional needs transformers >= {NATIVE_IS_CAUSAL}, which honours is_causal=False "
            f"for every attention backend; this is transformers {version}, where an eager model would stay "
            "causal. Upgrade transformers (pip install 'transformers>=5.2'), or see chapter 6 for what "
            "works on older versions."
        )


# The backbones attnviz knows how to patch; wrappers such as LlamaForCausalLM keep one in `.model`.
# Each was checked against its transformers source (chapter 9 shows the diffs): the attention is
# Llama's, plus QK-norm (Qwen3) and sliding windows (Mistral, Qwen2, Qwen3).
SUPPORTED_BACKBONES: tuple[type[nn.Module], ...] = (LlamaModel, MistralModel, Qwen2Model, Qwen3Model)


def find_backbone(model: nn.Module) -> nn.Module:
    """Return the Llama-family backbone of ``model``: the model itself, or its ``.model``.

    Raises:
        ValueError: for any other model, naming the supported families.
    """
    if isinstance(model, SUPPORTED_BACKBONES):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, SUPPORTED_BACKBONES):
        return inner
    names = ", ".join(cls.__name__ for cls in SUPPORTED_BACKBONES)
    raise ValueError(
        f"attnviz works on Llama-family models (Llama, Mistral, Qwen2, Qwen3); got {type(model).__name__}. "
        f"Supported backbones: {names}, or a model that keeps one in `.model` (e.g. LlamaForCausalLM, "
        "Qwen3ForCausalLM, MistralForSequenceClassification)."
    )


def sliding_windows(model: nn.Module) -> dict[int, int]:
    """The sliding-window layers of ``model``'s backbone: ``{layer index: window in tokens}``.

    Empty for a model whose every layer attends to the whole sequence. Qwen2 and Qwen3 mark each
    layer in ``config.layer_types``; Mistral applies ``config.sliding_window`` to every layer.
    """
    backbone = find_backbone(model)
    windows = {}
    for index, layer in enumerate(backbone.layers[: backbone.config.num_hidden_layers]):
        window = _layer_window(layer.self_attn)
        if window is not None:
            windows[index] = window
    return windows


def _layer_window(attention: nn.Module) -> int | None:
    # Qwen2/Qwen3 keep their layer's window (or None) on the module; Mistral reads its config at
    # call time (MistralAttention.forward passes getattr(self.config, "sliding_window", None)).
    if hasattr(attention, "sliding_window"):
        return attention.sliding_window
    return getattr(attention.config, "sliding_window", None)


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class PositionWarning(UserWarning):
    """A patch meant to remove positions left the model still depending on them."""


class NoRoPE(nn.Module):
    """A drop-in for ``LlamaRotaryEmbedding`` that returns cos = 1 and sin = 0.

    ``apply_rotary_pos_emb`` computes ``q * cos + rotate_half(q) * sin``, so with these tables
    queries and keys pass through unrotated and attention no longer sees positions. The output
    has the shape, dtype and device the real module would give: ``(*position_ids.shape, head_dim)``
    in the dtype of ``x``.
    """

    def __init__(self, config=None, head_dim: int | None = None):
        super().__init__()
        if head_dim is None:
            if config is None:
                raise ValueError("NoRoPE needs the model config or head_dim.")
            head_dim = _head_dim(config)
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*position_ids.shape, self.head_dim)  # (batch, seq, head_dim)
        return x.new_ones(shape), x.new_zeros(shape)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, cos=1, sin=0"


class InstancePatch:
    """A change to one model object, applied at once, undone by ``restore()`` or on leaving ``with``.

    ``attnviz.bidirectional(model)`` alone patches the model for good; ``with attnviz.bidirectional(model):``
    restores it on exit, also after an exception. Patches nest; undo them in reverse order.
    """

    kind = "patch"

    def __init__(self, model: nn.Module):
        self.model = model
        self.backbone = find_backbone(model)
        self.active = False
        self._apply()
        self.active = True

    def _apply(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _undo(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def restore(self) -> None:
        """Undo the patch; calling it again does nothing."""
        if self.active:
            self._undo()
            self.active = False

    def __enter__(self) -> nn.Module:
        return self.model

    def __exit__(self, *exc_info) -> bool:
        self.restore()
        return False

    def __repr__(self) -> str:
        state = "active" if self.active else "restored"
        return f"<attnviz.{self.kind} on {type(self.model).__name__}: {state}>"


_MISSING = object()


class bidirectional(InstancePatch):  # noqa: N801 - used like a function: attnviz.bidirectional(model)
    """Let every token attend to every other token in this one model (padding stays masked).

    Each call of the backbone's forward gets ``is_causal=False`` (replacing any ``is_causal`` the
    caller passed), which transformers >= 5.2 honours natively for every attention backend (see
    the module docstring). Only this instance changes:
    the wrapper is an attribute of the backbone object, removed again by ``restore()``.

    Sliding-window layers (Mistral, Qwen) stay windowed but become symmetric: transformers builds
    them with ``create_bidirectional_sliding_window_mask``, where query ``i`` sees key ``j`` when
    ``|i - j| <= window`` (chapter 9).
    """

    kind = "bidirectional"

    def _apply(self) -> None:
        _check_transformers()
        backbone = self.backbone
        self._saved = backbone.__dict__.get("forward", _MISSING)
        inner = backbone.forward  # the bound method, or an earlier patch's wrapper

        def forward(*args, **kwargs):
            kwargs["is_causal"] = False
            return inner(*args, **kwargs)

        forward.__wrapped__ = inner
        backbone.forward = forward

    def _undo(self) -> None:
        if self._saved is _MISSING:
            del self.backbone.forward
        else:
            self.backbone.forward = self._saved


class no_rope(InstancePatch):  # noqa: N801 - used like a function: attnviz.no_rope(model)
    """Remove rotary position embeddings from this one model: its ``rotary_emb`` becomes ``NoRoPE``.

    The original module is kept and put back by ``restore()``. Its buffers are not persistent, so
    the state dict does not change.

    A model with sliding-window layers (Mistral, or Qwen with ``sliding_attention`` in
    ``layer_types``) still depends on positions after this patch: which tokens a query may see is
    decided by their distance. ``no_rope`` then warns with ``PositionWarning`` (chapter 9).
    """

    kind = "no_rope"

    def _apply(self) -> None:
        windows = sliding_windows(self.backbone)
        if windows:
            warnings.warn(
                f"{type(self.model).__name__} has sliding-window attention in layers {sorted(windows)} "
                f"(window {sorted(set(windows.values()))} tokens): without RoPE it still depends on token "
                "positions in any input longer than the window, because the window is positional. "
                "For an order-free model use full attention in every layer "
                "(Qwen: layer_types all 'full_attention'; Mistral: sliding_window=None).",
                PositionWarning,
                stacklevel=3,
            )
        self._saved = self.backbone.rotary_emb
        self.backbone.rotary_emb = NoRoPE(self.backbone.config)

    def _undo(self) -> None:
        self.backbone.rotary_emb = self._saved


class LlamaBidirectionalModel(LlamaModel):
    """``LlamaModel`` with bidirectional attention and no position encoding: the book's version of
    the subclass in Arc Institute's STATE model, for the pinned transformers (5.24).

    What really makes it bidirectional here is the ``is_causal=False`` keyword that ``forward``
    adds to every call. Since transformers 5.2, ``LlamaModel.forward`` (through its
    ``merge_with_config_defaults`` decorator) reads that keyword, builds a bidirectional mask
    with ``create_bidirectional_mask`` and passes ``is_causal=False`` to the sdpa and flash
    kernels. STATE's original subclass also overrode ``_update_causal_mask`` to return ``None``;
    transformers removed that method in 4.53, so such an override is never called, and on
    4.53 - 5.1 an eager model patched that way silently stayed causal. There is no override here.

    Positions are removed by ``NoRoPE`` in place of ``rotary_emb``. Feed it with ``input_ids`` or,
    as STATE does with its own encoder, with ``inputs_embeds``.
    """

    def __init__(self, config):
        _check_transformers()
        super().__init__(config)
        self.rotary_emb = NoRoPE(config)

    def forward(self, *args, **kwargs):
        kwargs["is_causal"] = False
        return super().forward(*args, **kwargs)
