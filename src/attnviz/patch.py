"""Make one Llama-family model bidirectional and position-free without editing transformers.

Chapter 7 explains these on Llama; chapter 12 applies them to Mistral, Qwen2 and Qwen3, whose
backbones have the same ``rotary_emb`` attribute and the same ``is_causal`` handling.
Everything here acts on one model object and can be undone: nothing in transformers' modules
or classes is reassigned, and a config shared with other models is never written to.

How it works on transformers >= 5.2 (the book pins 5.24):

- ``bidirectional`` gives the backbone (and every submodule that shares its config) a private
  copy of the config with ``is_causal=False``, and a forward pre-hook that passes
  ``is_causal=False`` on every call. The ``merge_with_config_defaults`` decorator of
  ``LlamaModel.forward`` then builds a bidirectional mask (``create_bidirectional_mask``;
  ``None`` for sdpa without padding, so no ``seq x seq`` tensor is made) and hands
  ``is_causal=False`` on to the sdpa and flash kernels. That decorator writes ``is_causal``
  into the config for the duration of each call; with the private copy, the caller's config,
  which other models may share, is never touched.
- ``no_rope`` puts ``NoRoPE`` in place of the backbone's ``rotary_emb``, holding the real module
  as a child (so ``.to()`` moves it along): cos is the rotary module's ``attention_scaling``
  and sin is 0, so ``apply_rotary_pos_emb`` leaves queries and keys unrotated.

Patches of one model are kept in a small record on the backbone, not in closures: a patched
model can be deep-copied (the copy is patched on its own) and pickled, patches of one kind may
be stacked and restored in any order, and a forward wrapper another library installs (accelerate,
PEFT) is never overwritten or removed.
"""

import contextlib
import copy
import inspect
import warnings

import torch
import transformers
from packaging.version import Version
from torch import nn
from transformers import LlamaModel

from attnviz import families
from attnviz.families import find_backbone, sliding_windows

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


class PositionWarning(UserWarning):
    """A patch meant to remove positions left the model still depending on them."""


def rope_attention_scaling(config) -> float:
    """The factor a rotary module multiplies cos and sin by: 1.0 for plain RoPE.

    YaRN and LongRoPE scale every attention logit through it (their "attention temperature");
    ``LlamaRotaryEmbedding`` computes it with ``ROPE_INIT_FUNCTIONS[rope_type](config)``.
    """
    parameters = getattr(config, "rope_parameters", None) or {}
    rope_type = parameters.get("rope_type", "default")
    if rope_type == "default":
        return 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    return float(ROPE_INIT_FUNCTIONS[rope_type](config)[1])


class NoRoPE(nn.Module):
    """A drop-in for ``LlamaRotaryEmbedding`` that removes positions and nothing else.

    ``apply_rotary_pos_emb`` computes ``q * cos + rotate_half(q) * sin``. This module returns
    sin = 0 and cos = the rotary module's ``attention_scaling`` (1.0 for plain RoPE, more for YaRN
    or LongRoPE), which is what the real module returns at angle 0: queries and keys pass through
    unrotated, and the logits keep the scale the model was trained with. The output has the
    shape, dtype and device the real module would give, ``(*position_ids.shape, head_dim)`` in
    the dtype of ``x``; 1-D ``position_ids`` count as a batch of one.

    Args:
        config: the model config (for ``head_dim`` and the rope type's ``attention_scaling``).
        head_dim: instead of ``config``, the width of the tables.
        attention_scaling: the cos value; by default read from ``config`` (1.0 without one).
    """

    def __init__(self, config=None, head_dim: int | None = None, attention_scaling: float | None = None):
        super().__init__()
        if head_dim is None:
            if config is None:
                raise ValueError("NoRoPE needs the model config or head_dim.")
            head_dim = families.head_dim(config)
        if attention_scaling is None:
            attention_scaling = 1.0 if config is None else rope_attention_scaling(config)
        self.head_dim = head_dim
        self.attention_scaling = attention_scaling
        self.original: nn.Module | None = None

    @classmethod
    def around(cls, rotary: nn.Module) -> "NoRoPE":
        """A NoRoPE in place of ``rotary``, keeping it as the child ``original`` (so ``.to()`` moves it
        along) and reading its ``attention_scaling`` on every call."""
        module = cls(head_dim=rotary.inv_freq.shape[-1] * 2, attention_scaling=1.0)
        module.original = rotary
        return module

    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        if position_ids.dim() == 1:
            position_ids = position_ids[None]
        scaling = self.attention_scaling if self.original is None else self.original.attention_scaling
        shape = (*position_ids.shape, self.head_dim)  # (batch, seq, head_dim)
        return x.new_full(shape, float(scaling)), x.new_zeros(shape)

    def extra_repr(self) -> str:
        scaling = self.attention_scaling if self.original is None else self.original.attention_scaling
        return f"head_dim={self.head_dim}, cos={float(scaling):g}, sin=0"


# -- the record of a backbone's patches -------------------------------------------------------
_STATE = "_attnviz_patches"  # the backbone's attribute holding its _PatchRecord


class _PatchRecord:
    """What attnviz changed on one backbone: a plain object in its ``__dict__``, so ``copy.deepcopy``
    and pickle carry it along with the model (and the references inside it to the copies)."""

    def __init__(self):
        self.active: list[InstancePatch] = []
        self.hook_id: int | None = None  # the bidirectional forward pre-hook
        self.shared_config = None  # the caller's config, while a private copy is in use
        self.private_config = None
        self.config_holders: list[nn.Module] = []  # modules whose .config was the caller's
        self.norope: NoRoPE | None = None

    def count(self, kind: str) -> int:
        return sum(patch.kind == kind for patch in self.active)


def _record(backbone: nn.Module) -> _PatchRecord:
    record = backbone.__dict__.get(_STATE)
    if record is None:
        record = _PatchRecord()
        backbone.__dict__[_STATE] = record
    return record


def active_patches(model: nn.Module) -> list["InstancePatch"]:
    """The attnviz patches active on ``model``'s backbone, oldest first."""
    record = find_backbone(model).__dict__.get(_STATE)
    return list(record.active) if record is not None else []


def restore(model: nn.Module) -> None:
    """Undo every attnviz patch on ``model``'s backbone, e.g. on a deep copy of a patched model."""
    for patch in reversed(active_patches(model)):
        patch.restore()


class InstancePatch:
    """A change to one model object, applied at once, undone by ``restore()`` or on leaving ``with``.

    ``attnviz.bidirectional(model)`` alone patches the model for good; ``with attnviz.bidirectional(model):``
    restores it on exit, also after an exception, and a second ``with`` on the same object applies
    it again. Patches of one kind may be stacked on one model (through a wrapper and its ``.model``
    too) and restored in any order: the change stays while any of them is active.
    """

    kind = "patch"

    def __init__(self, model: nn.Module):
        self.model = model
        self.backbone = find_backbone(model)
        self.active = False
        self.apply()

    def apply(self) -> None:
        """Apply the patch again after ``restore()``; does nothing while it is active."""
        if self.active:
            return
        record = _record(self.backbone)
        if record.count(self.kind) == 0:
            self._apply_first(record)
        record.active.append(self)
        self.active = True

    def restore(self) -> None:
        """Undo the patch; calling it again does nothing."""
        if not self.active:
            return
        record = _record(self.backbone)
        record.active.remove(self)
        self.active = False
        if record.count(self.kind) == 0:
            self._undo_last(record)

    def _apply_first(self, record: _PatchRecord) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _undo_last(self, record: _PatchRecord) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> nn.Module:
        self.apply()
        return self.model

    def __exit__(self, *exc_info) -> bool:
        self.restore()
        return False

    def __deepcopy__(self, memo):
        # The model this patch was made with is copied only if it is part of what is being copied:
        # a deep copy of the backbone alone must not drag its wrapper along.
        new = object.__new__(type(self))
        memo[id(self)] = new
        # the copy started inside the model (at its backbone) when the backbone is already being copied
        started_inside = id(self.backbone) in memo and id(self.model) not in memo
        for name, value in self.__dict__.items():
            if name == "model" and value is not self.backbone and started_inside:
                continue
            setattr(new, name, copy.deepcopy(value, memo))
        if "model" not in new.__dict__:
            new.model = new.backbone
        return new

    def __getstate__(self) -> dict:
        # pickled as part of its backbone: the wrapper, if any, is not pulled into the pickle
        return {**self.__dict__, "model": self.backbone}

    def __repr__(self) -> str:
        state = "active" if self.active else "restored"
        return f"<attnviz.{self.kind} on {type(self.model).__name__}: {state}>"


# -- bidirectional ----------------------------------------------------------------------------
_CACHE_NAMES = ("cache", "past_key_values")


def _call_kwargs(module: nn.Module, args: tuple, kwargs: dict, forward=None) -> dict:
    """The forward call's arguments, all by name (positional ones named from the signature of
    ``forward``, by default the module's own)."""
    if not args:
        return kwargs
    names = list(inspect.signature(forward or type(module).forward).parameters)[1:]  # without self
    named = dict(zip(names, args, strict=False))
    return {**named, **kwargs}


def bidirectional_call(module: nn.Module, kwargs: dict) -> dict:
    """Turn one backbone call's keyword arguments into a bidirectional call.

    Sets ``is_causal=False`` (a caller's ``is_causal`` is replaced), refuses a KV cache, honours
    packed sequences in ``position_ids``, and returns the new keyword arguments.
    """
    for name in _CACHE_NAMES:
        if kwargs.get(name) is not None:
            raise ValueError(
                f"a bidirectional {type(module).__name__} was given a KV cache ({name}=...). A cache cannot "
                "serve a bidirectional model: the keys and values of earlier tokens would change when later "
                "tokens arrive. Run it on the whole sequence without a cache: model(..., use_cache=False), "
                "or generate(..., use_cache=False), which re-reads the whole sequence at every step."
            )
    if kwargs.get("use_cache"):
        raise ValueError(
            f"a bidirectional {type(module).__name__} was asked to build a KV cache (use_cache=True). A cache "
            "cannot serve a bidirectional model: the keys and values of earlier tokens would change when "
            "later tokens arrive. Pass use_cache=False (generate(..., use_cache=False) re-reads the whole "
            "sequence at every step)."
        )
    kwargs["use_cache"] = False
    kwargs["is_causal"] = False
    _mask_packed_sequences(module, kwargs)
    return kwargs


def _mask_packed_sequences(backbone: nn.Module, kwargs: dict) -> None:
    """Several sequences packed in one row (position_ids restart at 0) attend only within their own.

    transformers detects packing on the causal path (``find_packed_sequence_indices``) but its
    bidirectional mask ignores it; here the bidirectional mask is built with the packing as an
    extra condition, in the form the model's backend expects, and passed as the attention mask.
    """
    from transformers.masking_utils import (
        create_bidirectional_mask,
        find_packed_sequence_indices,
        packed_sequence_mask_function,
    )

    position_ids = kwargs.get("position_ids")
    mask = kwargs.get("attention_mask")
    if position_ids is None or position_ids.dim() != 2 or (mask is not None and not isinstance(mask, torch.Tensor)):
        return
    if mask is not None and mask.dim() != 2:
        return  # a prepared 4D mask is the caller's own choice, used as given
    packed = find_packed_sequence_indices(position_ids)
    if packed is None:
        return
    backend = backbone.config._attn_implementation
    if backend.startswith("flash"):
        return  # flash attention reads packing from position_ids itself (varlen kernels)
    if sliding_windows(backbone):
        raise ValueError(
            f"packed sequences (position_ids restart at 0) in a bidirectional {type(backbone).__name__} with "
            "sliding-window layers: attnviz does not build that mask. Pass each sequence in its own row with "
            "padding, or a 4D attention_mask of your own."
        )
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = backbone.embed_tokens(kwargs.pop("input_ids"))
        kwargs["inputs_embeds"] = embeds
    kwargs["attention_mask"] = create_bidirectional_mask(
        config=backbone.config,
        inputs_embeds=embeds,
        attention_mask=mask,
        and_mask_function=packed_sequence_mask_function(packed),
        allow_is_bidirectional_skip=False,
    )


def _bidirectional_pre_hook(module: nn.Module, args: tuple, kwargs: dict):
    return (), bidirectional_call(module, _call_kwargs(module, args, kwargs))


class bidirectional(InstancePatch):  # noqa: N801 - used like a function: attnviz.bidirectional(model)
    """Let every token attend to every other token in this one model (padding stays masked).

    Each call of the backbone's forward gets ``is_causal=False`` (replacing any ``is_causal`` the
    caller passed), which transformers >= 5.2 honours natively for every attention backend (see
    the module docstring), through a forward pre-hook on this backbone instance. While patched,
    the backbone and its submodules read a private copy of the config, so a config shared with
    other models is never written to. Only this instance changes.

    What it does not do, on purpose:

    - a KV cache is refused (``ValueError``), so is ``generate`` with one: earlier tokens' keys
      would change when later tokens arrive. ``use_cache`` defaults to False while patched.
    - packed sequences (``position_ids`` restarting at 0) stay apart: each attends both ways within
      its own sequence only. Sliding-window models refuse packed input.

    Sliding-window layers (Mistral, Qwen) stay windowed but become symmetric: transformers builds
    them with ``create_bidirectional_sliding_window_mask``, where query ``i`` sees key ``j`` when
    ``|i - j| <= window`` (chapter 12).
    """

    kind = "bidirectional"

    def __init__(self, model: nn.Module):
        _check_transformers()
        super().__init__(model)

    def _apply_first(self, record: _PatchRecord) -> None:
        backbone = self.backbone
        shared = backbone.config
        private = copy.deepcopy(shared)
        private.is_causal = False
        holders = [module for module in backbone.modules() if getattr(module, "config", None) is shared]
        for module in holders:
            module.config = private
        record.shared_config, record.private_config, record.config_holders = shared, private, holders
        handle = backbone.register_forward_pre_hook(_bidirectional_pre_hook, with_kwargs=True, prepend=True)
        record.hook_id = handle.id

    def _undo_last(self, record: _PatchRecord) -> None:
        backbone = self.backbone
        backbone._forward_pre_hooks.pop(record.hook_id, None)
        backbone._forward_pre_hooks_with_kwargs.pop(record.hook_id, None)
        shared, private = record.shared_config, record.private_config
        # a backend chosen while patched (set_attn_implementation on the backbone) is kept, as it would
        # have been without the patch
        if private._attn_implementation != shared._attn_implementation:
            shared._attn_implementation_internal = private._attn_implementation
        for module in record.config_holders:
            if module.config is private:
                module.config = shared
        record.hook_id = record.shared_config = record.private_config = None
        record.config_holders = []


# -- no_rope ----------------------------------------------------------------------------------
class no_rope(InstancePatch):  # noqa: N801 - used like a function: attnviz.no_rope(model)
    """Remove rotary position embeddings from this one model: its ``rotary_emb`` becomes ``NoRoPE``.

    The original module becomes ``NoRoPE``'s child ``original`` (so ``.to()`` and ``.half()`` move
    it along) and is put back by ``restore()``. Its buffers are not persistent, so the state dict
    does not change. RoPE's ``attention_scaling`` (YaRN, LongRoPE) is kept: only positions go.

    A model with sliding-window layers (Mistral, or Qwen with ``sliding_attention`` in
    ``layer_types``) still depends on positions after this patch: which tokens a query may see is
    decided by their distance. ``no_rope`` then warns with ``PositionWarning`` (chapter 12).
    """

    kind = "no_rope"

    def _apply_first(self, record: _PatchRecord) -> None:
        windows = sliding_windows(self.backbone)
        if windows:
            warnings.warn(
                f"{type(self.model).__name__} has sliding-window attention in layers {sorted(windows)} "
                f"(window {sorted(set(windows.values()))} tokens): without RoPE it still depends on token "
                "positions in any input longer than the window, because the window is positional. "
                "For an order-free model use full attention in every layer "
                "(Qwen: layer_types all 'full_attention'; Mistral: sliding_window=None).",
                PositionWarning,
                stacklevel=4,
            )
        record.norope = NoRoPE.around(self.backbone.rotary_emb)
        self.backbone.rotary_emb = record.norope

    def _undo_last(self, record: _PatchRecord) -> None:
        if self.backbone.rotary_emb is not record.norope:
            raise RuntimeError(
                f"{type(self.backbone).__name__}.rotary_emb was replaced while attnviz.no_rope was active, so "
                "attnviz cannot tell what to put back. Set rotary_emb yourself, or undo your change first."
            )
        self.backbone.rotary_emb = record.norope.original
        record.norope = None


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

    The model keeps its own copy of the config (with ``is_causal=False``), so a config shared with
    other models is never written to. Like ``attnviz.bidirectional`` it refuses a KV cache and
    keeps packed sequences apart. Positions are removed by ``NoRoPE`` in place of ``rotary_emb``.
    Feed it with ``input_ids`` or, as STATE does with its own encoder, with ``inputs_embeds``.

    ``save_pretrained`` writes ``"architectures": ["LlamaBidirectionalModel"]``, which
    ``AutoModel`` does not know: load it with ``attnviz.LlamaBidirectionalModel.from_pretrained``
    (``attnviz check --model`` does).
    """

    def __init__(self, config):
        _check_transformers()
        config = copy.deepcopy(config)
        config.is_causal = False
        super().__init__(config)
        self.rotary_emb = NoRoPE(config)

    def forward(self, *args, **kwargs):
        # positional arguments are named as LlamaModel.forward names them: this signature has none
        return super().forward(**bidirectional_call(self, _call_kwargs(self, args, kwargs, LlamaModel.forward)))


# The four variants the book compares: name -> the keyword arguments of ``patched``.
VARIANTS: dict[str, dict[str, bool]] = {
    "causal + RoPE": {"bidirectional": False, "no_rope": False},
    "bidirectional + RoPE": {"bidirectional": True, "no_rope": False},
    "causal + NoRoPE": {"bidirectional": False, "no_rope": True},
    "bidirectional + NoRoPE": {"bidirectional": True, "no_rope": True},
}

_bidirectional, _no_rope = bidirectional, no_rope  # the classes, under names the keywords below leave free


@contextlib.contextmanager
def patched(model: nn.Module, *, bidirectional: bool = False, no_rope: bool = False):
    """Apply ``attnviz.bidirectional`` and/or ``attnviz.no_rope`` to ``model`` for one ``with`` block.

    With both flags False nothing changes, so one code path serves every variant::

        for name, flags in attnviz.VARIANTS.items():
            with attnviz.patched(model, **flags):
                ...

    The patches are undone on leaving the block, also after an exception.
    """
    with contextlib.ExitStack() as stack:
        if bidirectional:
            stack.enter_context(_bidirectional(model))
        if no_rope:
            stack.enter_context(_no_rope(model))
        yield model
