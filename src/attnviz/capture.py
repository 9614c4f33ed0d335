"""Capture attention weights from any backend, as eager attention would return them.

Chapter 5 explains why this is needed: sdpa, flex and flash attention never materialise the
weights, and transformers returns none for them. ``capture_attention`` hooks this one model's
attention modules (nothing global is touched), lets the model run on its own backend, and
recomputes each layer's weights from the inputs that layer really received: its hidden states,
its cos/sin, and its mask in whatever form the backend got it (additive float, boolean,
``None`` plus an ``is_causal`` flag, or a flex ``BlockMask``).
"""

import torch
from torch import nn

from attnviz.families import find_backbone, has_qk_norm, layer_window
from attnviz.reference import apply_rope, causal_mask, repeat_kv

KNOWN_BACKENDS = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")


def _allowed_from_mask(mask, module, kwargs, backend, batch, q_len, k_len, device) -> torch.Tensor | None:
    """The boolean (batch or 1, 1, q_len, k_len) pattern the backend applied, True = may attend.

    Returns None when ``mask`` is already an additive float mask (used as is).
    """
    try:
        from torch.nn.attention.flex_attention import BlockMask, create_mask
    except ImportError:  # pragma: no cover - torch without flex attention
        BlockMask = ()  # noqa: N806

    if isinstance(mask, BlockMask):
        dense = create_mask(mask.mask_mod, mask.shape[0], 1, q_len, k_len, device=device)
        return dense.bool()
    if mask is not None and mask.dtype == torch.bool:
        return mask[..., :k_len]
    if mask is not None and mask.dim() == 4:
        return None  # additive float mask, the eager form
    if backend == "flex_attention":
        return torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)  # flex without a mask: none

    # sdpa / flash with no 4D mask: the kernel's own is_causal flag decides, as transformers computes it
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    causal = bool(q_len > 1 and is_causal)
    allowed = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & causal_mask(q_len, k_len, device=device)
    window = layer_window(module)
    if backend.startswith("flash") and window is not None and k_len > window:
        # flash gets no mask for the window: transformers 5.24 passes window_size=(window - 1, window - 1)
        # to the kernel (modeling_flash_attention_utils._process_flash_attention_kwargs), i.e. |i - j| < window
        offset = k_len - q_len
        q_idx = torch.arange(offset, k_len, device=device)[:, None]
        k_idx = torch.arange(k_len, device=device)[None, :]
        allowed = allowed & ((q_idx - k_idx).abs() < window)
    if mask is not None and mask.dim() == 2:  # flash: a 2D padding mask, 1 = token
        allowed = allowed & mask.bool()[:, None, None, :k_len]
    return allowed


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
    # the returned weights, plus one layer's float32 scores and softmax while it is recomputed
    needed = n_layers * n_heads * per_head * parameter.element_size() + 2 * n_heads * per_head * 4
    available = _available_bytes(parameter.device)
    if available is not None and needed > 0.8 * available:
        raise MemoryError(
            f"capture_attention would need about {_human(needed)} for {n_layers} layer(s) x {n_heads} head(s) "
            f"x {batch} x {seq} x {seq} weights, and this machine has {_human(available)} free. Capture less: "
            "layers=[...] and heads=[...] keep only what you ask for (one layer and one head at "
            f"{seq} tokens is {_human(per_head * parameter.element_size())}), or use a shorter input."
        )


def _recompute_weights(module: nn.Module, inputs: dict, backend: str, masks: dict, heads=None) -> torch.Tensor:
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
    query, key = apply_rope(query, key, cos, sin)
    key = repeat_kv(key, module.num_key_value_groups)
    if heads is not None:  # only the heads asked for: (batch, len(heads), seq, head_dim)
        query, key = query[:, heads], key[:, heads]
    k_len = key.shape[2]

    scores = torch.matmul(query, key.transpose(2, 3)).mul_(module.scaling)  # (batch, heads, q_len, k_len)
    mask = inputs.get("attention_mask")
    # Every layer of one forward gets the same mask object: work out its pattern once.
    cache_key = (id(mask), inputs.get("is_causal"), getattr(module, "is_causal", True), layer_window(module))
    if cache_key not in masks:
        allowed = _allowed_from_mask(mask, module, inputs, backend, batch, seq, k_len, scores.device)
        # None: an additive float mask to add as is; False: nothing is masked
        masks[cache_key] = None if allowed is None else (~allowed if not allowed.all() else False)
    blocked = masks[cache_key]
    if blocked is None:
        scores = scores + mask[:, :, :, :k_len]
    elif blocked is not False:
        scores.masked_fill_(blocked, torch.finfo(scores.dtype).min)  # what eager's additive mask amounts to
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)


def capture_attention(model: nn.Module, *, layers=None, heads=None, **inputs) -> tuple[torch.Tensor | None, ...]:
    """Run ``model(**inputs)`` and return one ``(batch, heads, q_len, k_len)`` weight tensor per layer.

    Works whatever ``config._attn_implementation`` is; the weights equal what eager attention
    with ``output_attentions=True`` returns for the same model. The model runs once on its own
    backend, in eval mode (no dropout), called exactly as ``model(**inputs)`` would be, so the
    mask it builds is the one a plain call builds (transformers' choices, e.g. whether packed
    ``position_ids`` are detected, can depend on whether a cache is in use: nothing is forced here).
    Its backend, mode, config and modules are unchanged afterwards. The tuple has the layout of
    ``outputs.attentions``, which bertviz's ``head_view`` also takes. (With sdpa or flex,
    transformers' own ``output_attentions=True`` returns no weights: this is the way to get them.)

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
            has free: the message gives the estimate and how to capture less.
    """
    backbone = find_backbone(model)
    backend = backbone.config._attn_implementation
    if backend not in KNOWN_BACKENDS:
        raise ValueError(
            f"capture_attention does not know how the {backend!r} attention backend masks, so it cannot "
            f"reproduce its weights. Use one of {', '.join(KNOWN_BACKENDS)}, e.g. "
            "model.set_attn_implementation('sdpa')."
        )
    if not inputs:
        raise ValueError("capture_attention needs the model's inputs, e.g. capture_attention(model, input_ids=ids).")
    for name in ("cache", "past_key_values"):
        if inputs.get(name) is not None:
            raise ValueError(
                f"capture_attention was given a KV cache ({name}=...): it recomputes each layer's weights from "
                "that call's own queries and keys, and does not read cached keys. Pass the whole sequence "
                "(prompt and generated tokens) without a cache; the last rows are the decode steps' weights."
            )

    modules = [layer.self_attn for layer in backbone.layers[: backbone.config.num_hidden_layers]]
    if layers is None:
        wanted = set(range(len(modules)))
    else:
        layers = list(layers)
        if any(not -len(modules) <= i < len(modules) for i in layers):
            raise ValueError(
                f"layers must be indices of the model's {len(modules)} layers (0 to {len(modules) - 1}, or "
                f"negative from the end); got {layers}."
            )
        wanted = {range(len(modules))[i] for i in layers}
    n_heads = backbone.config.num_attention_heads
    if heads is not None:
        heads = list(heads)
        if not heads or any(not -n_heads <= h < n_heads for h in heads):
            raise ValueError(f"heads must be indices of the model's {n_heads} query heads; got {heads}.")
    _check_memory(inputs, len(wanted), n_heads if heads is None else len(heads), backbone)
    recorded: list[dict] = [{} for _ in modules]
    weights: list[torch.Tensor | None] = [None] * len(modules)
    masks: dict = {}
    handles = []

    def make_hooks(index: int):
        def before(module, args, kwargs):
            recorded[index] = dict(kwargs)
            if args:
                recorded[index]["hidden_states"] = args[0]

        def projection(name):
            def keep(linear, args, output):
                recorded[index][name] = output

            return keep

        def after(module, args, kwargs, output):
            returned = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if backend == "eager" and returned is not None:
                weights[index] = returned.detach() if heads is None else returned.detach()[:, heads]
            else:
                with torch.no_grad():
                    weights[index] = _recompute_weights(module, recorded[index], backend, masks, heads)
            recorded[index] = {}  # do not keep activations alive longer than needed

        return before, after, projection

    try:
        for index, module in enumerate(modules):
            if index not in wanted:
                continue
            before, after, projection = make_hooks(index)
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
            if backend != "eager":
                handles.append(module.q_proj.register_forward_hook(projection("q_proj")))
                handles.append(module.k_proj.register_forward_hook(projection("k_proj")))
        was_training = model.training
        model.eval()  # dropout would make the weights random; eval() is what eager's returned weights mean
        try:
            with torch.no_grad():
                model(**inputs)
        finally:
            model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()

    missing = [i for i, w in enumerate(weights) if w is None and i in wanted]
    if missing:
        raise RuntimeError(f"layers {missing} were not run; was the forward pass cut short?")
    return tuple(weights)
