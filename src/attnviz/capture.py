"""Capture attention weights from any backend, as eager attention would return them.

Chapter 5 explains why this is needed: sdpa, flex and flash attention never materialise the
weights, and transformers returns none for them. ``capture_attention`` hooks this one model's
attention modules (nothing global is touched), lets the model run on its own backend, and
recomputes each layer's weights from the inputs that layer really received: its hidden states,
its cos/sin, and its mask in whatever form the backend got it (additive float, boolean,
``None`` plus an ``is_causal`` flag, or a flex ``BlockMask``).

The weights are recomputed a block of query rows at a time (``attention_rows``), with the mask
worked out for that block only (``MaskRows``): ``attnviz.attention_map`` (chapter 14) streams the
same rows through a pooling step instead of keeping them, so it never holds ``seq x seq``.
"""

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn

from attnviz.families import find_backbone, has_qk_norm, layer_window
from attnviz.reference import apply_rope, repeat_kv

KNOWN_BACKENDS = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")

# How many float32 scores one block of rows may hold (64 MB): small enough that the blocks of a
# 32k-token map stay far below the 700 MB it may use, large enough that a short input is one block.
BLOCK_ELEMENTS = 16 * 2**20


# -- which layers: validation shared by capture_attention and attention_map --------------------
def check_call(model: nn.Module, inputs: dict, caller: str) -> tuple[nn.Module, str, list[nn.Module]]:
    """Refuse what cannot be reproduced; return ``(backbone, backend, attention modules)``."""
    backbone = find_backbone(model)
    backend = backbone.config._attn_implementation
    if backend not in KNOWN_BACKENDS:
        raise ValueError(
            f"{caller} does not know how the {backend!r} attention backend masks, so it cannot "
            f"reproduce its weights. Use one of {', '.join(KNOWN_BACKENDS)}, e.g. "
            "model.set_attn_implementation('sdpa')."
        )
    if not inputs:
        raise ValueError(f"{caller} needs the model's inputs, e.g. {caller}(model, input_ids=ids).")
    for name in ("cache", "past_key_values"):
        if inputs.get(name) is not None:
            raise ValueError(
                f"{caller} was given a KV cache ({name}=...): it recomputes each layer's weights from "
                "that call's own queries and keys, and does not read cached keys. Pass the whole sequence "
                "(prompt and generated tokens) without a cache; the last rows are the decode steps' weights."
            )
    modules = [layer.self_attn for layer in backbone.layers[: backbone.config.num_hidden_layers]]
    return backbone, backend, modules


def layer_indices(layers, n_layers: int) -> list[int]:
    """Layer indices (negative ones count from the end) as non-negative ones, or a ValueError."""
    layers = list(layers)
    if any(not -n_layers <= i < n_layers for i in layers):
        raise ValueError(
            f"layers must be indices of the model's {n_layers} layers (0 to {n_layers - 1}, or "
            f"negative from the end); got {layers}."
        )
    return [range(n_layers)[i] for i in layers]


def head_indices(heads, n_heads: int) -> list[int]:
    """Query-head indices as non-negative ones, or a ValueError."""
    heads = list(heads)
    if not heads or any(not -n_heads <= h < n_heads for h in heads):
        raise ValueError(f"heads must be indices of the model's {n_heads} query heads; got {heads}.")
    return [range(n_heads)[h] for h in heads]


# -- running the model up to the layers asked for --------------------------------------------
class _Done(Exception):
    """Raised by a hook once the last layer asked for is done: the rest of the forward is skipped."""


def run_layers(
    model: nn.Module,
    modules: list[nn.Module],
    wanted: set[int],
    inputs: dict,
    on_output: Callable | None = None,
    projections: bool = False,
) -> dict[int, dict]:
    """Run ``model(**inputs)`` once (eval mode, no gradients) with hooks on the wanted layers' attention.

    Each wanted layer's attention inputs are recorded: ``hidden_states``, and the keyword arguments
    it was called with (``position_embeddings``, ``attention_mask``, ``is_causal``, ...); with
    ``projections``, also the ``q_proj`` and ``k_proj`` outputs it computed. With ``on_output``, each
    record is handed to ``on_output(index, module, record, output)`` right after that attention ran,
    then dropped; without, the forward stops before the last wanted layer's attention runs and the
    records are returned. Either way nothing after the last wanted layer runs (later layers, the
    final norm, a language-model head): a hook raises a private exception, caught here.

    The model's training mode is put back afterwards and every hook removed.
    """
    last = max(wanted)
    recorded: dict[int, dict] = {}
    done: set[int] = set()
    handles = []

    def make_hooks(index: int):
        def before(module, args, kwargs):
            recorded[index] = dict(kwargs)
            if args:
                recorded[index]["hidden_states"] = args[0]
            if on_output is None:
                done.add(index)
                if index == last:
                    raise _Done

        def projection(name):
            def keep(linear, args, output):
                recorded[index][name] = output

            return keep

        def after(module, args, kwargs, output):
            on_output(index, module, recorded.pop(index), output)  # do not keep activations alive longer
            done.add(index)
            if index == last:
                raise _Done

        return before, after, projection

    try:
        for index in sorted(wanted):
            module = modules[index]
            before, after, projection = make_hooks(index)
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            if on_output is not None:
                handles.append(module.register_forward_hook(after, with_kwargs=True))
            if projections:
                handles.append(module.q_proj.register_forward_hook(projection("q_proj")))
                handles.append(module.k_proj.register_forward_hook(projection("k_proj")))
        was_training = model.training
        model.eval()  # dropout would make the weights random; eval() is what eager's returned weights mean
        try:
            with torch.no_grad():
                model(**inputs)
        except _Done:
            pass
        finally:
            model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()

    missing = sorted(wanted - done)
    if missing:
        raise RuntimeError(f"layers {missing} were not run; was the forward pass cut short?")
    return recorded


# -- the queries and keys a layer compared ----------------------------------------------------
def query_key_states(module: nn.Module, inputs: dict, heads=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotated queries and keys one attention layer compared, from what its hooks recorded.

    Returns ``(query, key)``, each ``(batch, len(heads), seq, head_dim)``: key head ``h`` is the
    key/value head that query head ``h`` reads (``repeat_kv``'s order). All heads when ``heads`` is None.
    """
    hidden_states = inputs["hidden_states"]
    cos, sin = inputs["position_embeddings"]
    batch, seq, _ = hidden_states.shape
    head_dim = module.head_dim

    # the projections the layer itself computed (recorded by hooks), else computed again
    query = inputs.get("q_proj")
    query = module.q_proj(hidden_states) if query is None else query
    key = inputs.get("k_proj")
    key = module.k_proj(hidden_states) if key is None else key
    query = query.view(batch, seq, -1, head_dim)
    key = key.view(batch, seq, -1, head_dim)
    if has_qk_norm(module):  # Qwen3: RMSNorm of each head's query and key, before RoPE
        query, key = module.q_norm(query), module.k_norm(key)
    query = query.transpose(1, 2)  # (batch, heads, seq, head_dim)
    key = key.transpose(1, 2)  # (batch, kv_heads, seq, head_dim)
    if heads is None:
        query, key = apply_rope(query, key, cos, sin)
        return query, repeat_kv(key, module.num_key_value_groups)
    # only the heads asked for; RoPE acts on each head alone, so rotating fewer heads changes nothing
    kv_heads = [h // module.num_key_value_groups for h in heads]
    return apply_rope(query[:, heads], key[:, kv_heads], cos, sin)  # (batch, len(heads), seq, head_dim) each


# -- the mask, a block of query rows at a time ------------------------------------------------
def _reach(allowed: torch.Tensor) -> tuple[int, int] | None:
    """The key range outside which no row of ``allowed`` (batch, 1, rows, keys) may attend.

    None when some row may attend to nothing: softmax then spreads that row over every key, as
    eager does with its additive mask, so no key can be left out.
    """
    if not bool(allowed.any(-1).all()):
        return None
    columns = allowed.any(-2).flatten(0, -2).any(0).nonzero()  # keys some row of the block may see
    return int(columns[0]), int(columns[-1]) + 1


class MaskRows:
    """The mask one attention layer applied, handed out for a block of query rows at a time.

    Built from the mask in whatever form the backend received it, never as a dense ``seq x seq``
    tensor of its own: a 4D tensor (boolean, or eager's additive float) is sliced; a flex
    ``BlockMask`` has its ``mask_mod`` evaluated on the block's indices; ``None`` (sdpa and flash
    skip the mask when a flag says it all) is computed from indices and the ``is_causal`` flag the
    kernel got. ``rows`` also says which keys the block can reach at all, so the rest is skipped.
    """

    def __init__(self, module: nn.Module, inputs: dict, backend: str, batch: int, q_len: int, k_len: int, device):
        try:
            from torch.nn.attention.flex_attention import BlockMask
        except ImportError:  # pragma: no cover - torch without flex attention
            BlockMask = ()  # noqa: N806

        self.q_len, self.k_len, self.device = q_len, k_len, device
        self.offset = k_len - q_len  # the queries are the last q_len of the k_len positions
        self.block_mask = self.dense = self.bias = self.padding = None
        self.causal, self.window = False, None
        mask = inputs.get("attention_mask")
        if isinstance(mask, BlockMask):
            self.block_mask = mask
        elif mask is not None and mask.dim() == 4:
            if mask.dtype == torch.bool:
                self.dense = mask
            else:
                self.bias = mask  # additive float mask, the eager form: added to the scores as is
        elif backend != "flex_attention":  # flex without a mask masks nothing
            # sdpa / flash with no 4D mask: the kernel's own is_causal flag decides, as transformers computes it
            is_causal = inputs.get("is_causal")
            is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
            self.causal = bool(q_len > 1 and is_causal)
            window = layer_window(module)
            if backend.startswith("flash") and window is not None and k_len > window:
                # flash gets no mask for the window: transformers 5.24 passes window_size=(window - 1, window - 1)
                # to the kernel (modeling_flash_attention_utils._process_flash_attention_kwargs), i.e. |i - j| < window
                self.window = window
            if mask is not None and mask.dim() == 2:  # flash: a 2D padding mask, 1 = token
                self.padding = mask.bool()[:, None, None, :k_len]

    def _computed(self, start: int, stop: int, key_start: int, key_stop: int) -> torch.Tensor | None:
        """The pattern of the ``None`` form for these rows and keys; None when all may attend."""
        if not (self.causal or self.window or self.padding is not None):
            return None
        q_idx = torch.arange(start + self.offset, stop + self.offset, device=self.device)[:, None]
        k_idx = torch.arange(key_start, key_stop, device=self.device)[None, :]
        allowed = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=self.device)
        if self.causal:
            allowed = allowed & (k_idx <= q_idx)
        if self.window:
            allowed = allowed & ((q_idx - k_idx).abs() < self.window)
        if self.padding is not None:
            allowed = allowed & self.padding[..., key_start:key_stop]
        return allowed.expand(-1, -1, stop - start, -1)  # (batch or 1, 1, rows, keys)

    def _rows_of(self, mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        rows = mask if mask.shape[-2] == 1 else mask[:, :, start:stop]  # a (.., 1, k) mask holds for every row
        return rows[..., : self.k_len]

    def rows(self, start: int, stop: int, widen=None) -> "RowMask":
        """The mask of query rows ``start:stop``, and the keys those rows can reach at all.

        ``widen`` maps a key range to a larger one the caller prefers (e.g. whole blocks of a
        pooled map).
        """
        widen = widen or (lambda key_start, key_stop: (key_start, key_stop))
        if self.block_mask is None and self.dense is None and self.bias is None:
            key_start, key_stop = 0, self.k_len
            if self.causal:
                key_stop = stop + self.offset
            if self.window:
                key_start = max(0, start + self.offset - self.window + 1)
                key_stop = min(key_stop, stop + self.offset + self.window - 1)
            key_start, key_stop = widen(key_start, key_stop)
            allowed_start = key_start
            if self.causal and not self.window and self.padding is None:
                # every row sees the keys up to its first query: only the last rows x rows are a triangle
                allowed_start = max(key_start, start + self.offset)
            allowed = self._computed(start, stop, allowed_start, key_stop)
            # causal and window rows always see their own token; a padding row may see nothing
            if self.padding is not None and not bool(allowed.any(-1).all()):
                key_start, key_stop = 0, self.k_len
                allowed_start = key_start
                allowed = self._computed(start, stop, key_start, key_stop)
            return RowMask(key_start, key_stop, allowed, allowed_start, None)

        bias = None
        if self.block_mask is not None:
            from torch.nn.attention.flex_attention import create_mask

            mask_mod = self.block_mask.mask_mod

            def shifted(b, h, q_idx, kv_idx):  # the block's rows, numbered as in the whole sequence
                return mask_mod(b, h, q_idx + start, kv_idx)

            allowed = create_mask(shifted, self.block_mask.shape[0], 1, stop - start, self.k_len, device=self.device)
        elif self.dense is not None:
            allowed = self._rows_of(self.dense, start, stop)
        else:
            bias = self._rows_of(self.bias, start, stop)
            # transformers writes the dtype's minimum where a query may not attend; softmax turns any
            # score that low into exactly 0 as long as the row has one ordinary score
            allowed = bias > torch.finfo(bias.dtype).min / 2
        reach = _reach(allowed)
        key_start, key_stop = widen(*reach) if reach is not None else (0, self.k_len)
        allowed = allowed[..., key_start:key_stop]
        if bias is not None:
            bias = bias[..., key_start:key_stop]
        return RowMask(key_start, key_stop, allowed, key_start, bias)


class RowMask(NamedTuple):
    """The mask of a block of query rows, as ``MaskRows.rows`` hands it out.

    Every weight of these rows outside keys ``key_start:key_stop`` is exactly 0. ``allowed`` is a
    boolean ``(batch or 1, 1, rows or 1, key_stop - allowed_start)``, True where a query may
    attend to key ``allowed_start + j``; the keys ``key_start:allowed_start`` before it are open
    to every row. None when all keys are open. ``bias`` is the additive float mask to add to the
    scores (for keys ``key_start:key_stop``), for the eager form; ``allowed`` is then where it is
    not the dtype's minimum.
    """

    key_start: int
    key_stop: int
    allowed: torch.Tensor | None
    allowed_start: int
    bias: torch.Tensor | None


# -- exact softmax rows, a block at a time ------------------------------------------------------
class RowBlock(NamedTuple):
    """Query rows ``start:stop`` of one layer's attention weights, for keys ``key_start:`` on."""

    start: int
    stop: int
    key_start: int
    weights: torch.Tensor  # (batch, heads, stop - start, keys) float32; 0 outside these keys
    mask: RowMask  # which of these keys each row may attend to


def block_rows(batch_heads: int, k_len: int) -> int:
    """Query rows per block so that one block's float32 scores stay within ``BLOCK_ELEMENTS``."""
    return max(1, BLOCK_ELEMENTS // max(1, batch_heads * k_len))


def attention_rows(
    module: nn.Module, inputs: dict, backend: str, heads=None, rows: int | None = None, widen=None
) -> Iterator[RowBlock]:
    """Recompute one layer's attention weights from its recorded inputs, ``rows`` query rows at a time.

    Each block holds exact softmax rows, computed as eager attention computes them (scores times
    ``scaling``, the mask, softmax in float32), for the keys the block can reach; weights outside
    them are exactly 0. Only one block of ``rows x keys`` scores exists at a time.
    """
    query, key = query_key_states(module, inputs, heads)  # (batch, heads, seq, head_dim)
    batch, n_heads, q_len, _ = query.shape
    k_len = key.shape[2]
    masks = MaskRows(module, inputs, backend, batch, q_len, k_len, query.device)
    rows = rows or block_rows(batch * n_heads, k_len)
    for start in range(0, q_len, rows):
        stop = min(start + rows, q_len)
        mask = masks.rows(start, stop, widen)
        key_start, key_stop = mask.key_start, mask.key_stop
        scores = torch.matmul(query[:, :, start:stop], key[:, :, key_start:key_stop].transpose(2, 3))
        scores = scores.mul_(module.scaling)  # (batch, heads, stop - start, key_stop - key_start)
        if mask.bias is not None:
            scores = scores + mask.bias
        elif mask.allowed is not None:  # what eager's additive mask amounts to
            scores[..., mask.allowed_start - key_start :].masked_fill_(~mask.allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32)
        del scores
        yield RowBlock(start, stop, key_start, weights, mask)


# -- capture_attention --------------------------------------------------------------------------
def _available_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1024 or unit == "TB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError  # unreachable


def _check_memory(inputs: dict, n_layers: int, n_heads: int, backbone: nn.Module) -> None:
    """Refuse, before running, a capture whose weights cannot fit in free memory."""
    reference = inputs.get("input_ids")
    if reference is None:
        reference = inputs.get("inputs_embeds")
    if reference is None or reference.dim() < 2:
        return
    batch, seq = reference.shape[:2]
    parameter = next(backbone.parameters())
    per_head = batch * seq * seq
    # the returned weights, plus one block of float32 scores and softmax while they are recomputed
    needed = n_layers * n_heads * per_head * parameter.element_size() + 2 * BLOCK_ELEMENTS * 4
    available = _available_bytes(parameter.device)
    if available is not None and needed > 0.8 * available:
        raise MemoryError(
            f"capture_attention would need about {_human(needed)} for {n_layers} layer(s) x {n_heads} head(s) "
            f"x {batch} x {seq} x {seq} weights, and this machine has {_human(available)} free. Capture less: "
            "layers=[...] and heads=[...] keep only what you ask for (one layer and one head at "
            f"{seq} tokens is {_human(per_head * parameter.element_size())}), or use a shorter input. For a "
            "long input, attnviz.attention_map(model, layer=..., head=..., **inputs) draws one head's exact "
            "weights pooled to a few hundred blocks a side, streaming the rows, without ever holding "
            "seq x seq."
        )


def check_forward_memory(inputs: dict, backbone: nn.Module, backend: str, layer: int, caller: str) -> None:
    """Refuse, before running, an eager forward up to ``layer`` whose ``seq x seq`` tensors cannot fit.

    Eager attention builds its mask as a ``(batch, 1, seq, seq)`` float tensor, and each layer it
    runs holds ``(batch, heads, seq, seq)`` scores and weights; sdpa, flex and flash hold neither.
    """
    reference = inputs.get("input_ids")
    if reference is None:
        reference = inputs.get("inputs_embeds")
    if backend != "eager" or reference is None or reference.dim() < 2:
        return
    batch, seq = reference.shape[:2]
    parameter = next(backbone.parameters())
    square = batch * seq * seq * parameter.element_size()
    needed = square + (2 * backbone.config.num_attention_heads * square if layer > 0 else 0)
    available = _available_bytes(parameter.device)
    if available is not None and needed > 0.8 * available:
        raise MemoryError(
            f"{caller}: this model runs eager attention, whose own forward pass up to layer {layer} needs about "
            f"{_human(needed)} at {seq} tokens (its mask and weights are seq x seq), and this machine has "
            f"{_human(available)} free. Switch the backend first: model.set_attn_implementation('sdpa')."
        )


def capture_attention(model: nn.Module, *, layers=None, heads=None, **inputs) -> tuple[torch.Tensor | None, ...]:
    """Run ``model(**inputs)`` and return one ``(batch, heads, q_len, k_len)`` weight tensor per layer.

    Works whatever ``config._attn_implementation`` is; the weights equal what eager attention
    with ``output_attentions=True`` returns for the same model. The model runs once on its own
    backend, in eval mode (no dropout), called exactly as ``model(**inputs)`` would be, so the
    mask it builds is the one a plain call builds (transformers' choices, e.g. whether packed
    ``position_ids`` are detected, can depend on whether a cache is in use: nothing is forced here).
    The forward stops after the last layer asked for. Its backend, mode, config and modules are
    unchanged afterwards. The tuple has the layout of ``outputs.attentions``, which bertviz's
    ``head_view`` also takes. (With sdpa or flex, transformers' own ``output_attentions=True``
    returns no weights: this is the way to get them.)

    Args:
        model: a Llama-family model (Llama, Mistral, Qwen2, Qwen3) or a wrapper of one (e.g.
            ``LlamaForCausalLM``). Sliding-window layers give weights that are zero outside the window.
        layers: capture only these layer indices; the others are ``None`` in the result. On long
            sequences this saves the ``(heads, seq, seq)`` tensors of the layers you skip.
        heads: capture only these query heads (same for every captured layer): each tensor is then
            ``(batch, len(heads), q_len, k_len)``.
        inputs: what you would pass to the model: ``input_ids`` or ``inputs_embeds``,
            ``attention_mask``, ``position_ids``, ... A KV cache is refused: pass the whole sequence.

    Raises:
        ValueError: for a model attnviz does not support, an attention backend whose masking
            attnviz does not know (switch the model to eager, sdpa or flex_attention), a KV cache,
            or layers/heads the model does not have.
        MemoryError: before running, when the weights would not fit in the memory this machine
            has free: the message gives the estimate, how to capture less, and points to
            ``attnviz.attention_map`` for long inputs.
    """
    backbone, backend, modules = check_call(model, inputs, "capture_attention")
    wanted = set(range(len(modules)) if layers is None else layer_indices(layers, len(modules)))
    n_heads = backbone.config.num_attention_heads
    if heads is not None:
        heads = head_indices(heads, n_heads)
    _check_memory(inputs, len(wanted), n_heads if heads is None else len(heads), backbone)
    weights: list[torch.Tensor | None] = [None] * len(modules)

    def keep(index, module, recorded, output):
        returned = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if backend == "eager" and returned is not None:
            weights[index] = returned.detach() if heads is None else returned.detach()[:, heads]
            return
        dtype = recorded["hidden_states"].dtype
        for block in attention_rows(module, recorded, backend, heads):
            if weights[index] is None:
                batch, n, _, _ = block.weights.shape
                seq = recorded["hidden_states"].shape[1]
                weights[index] = block.weights.new_zeros(batch, n, seq, seq, dtype=dtype)
            key_stop = block.key_start + block.weights.shape[-1]
            weights[index][:, :, block.start : block.stop, block.key_start : key_stop] = block.weights

    if wanted:
        run_layers(model, modules, wanted, inputs, on_output=keep, projections=backend != "eager")
    return tuple(weights)
