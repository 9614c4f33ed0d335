"""Readable re-implementations of Llama attention, each equal to its transformers counterpart.

Chapters 1-4 rebuild these step by step (chapters 11 and 12 add Qwen3's QK-norm and sliding windows);
the tests check every function against transformers itself (``tests/test_reference.py``).
Names follow transformers and the papers.
"""

import torch


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head ``n_rep`` times so every query head has its own copy.

    ``(batch, kv_heads, seq, head_dim)`` -> ``(batch, kv_heads * n_rep, seq, head_dim)``; head ``h``
    of the result is key/value head ``h // n_rep``. Same as ``repeat_interleave`` on dim 1.
    """
    batch, kv_heads, seq, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    expanded = hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq, head_dim)
    return expanded.reshape(batch, kv_heads * n_rep, seq, head_dim)


def eager_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    scaling: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention written out, as transformers' ``eager_attention_forward`` (no dropout).

    Args:
        query: ``(batch, heads, q_len, head_dim)``.
        key, value: ``(batch, kv_heads, k_len, head_dim)``; ``heads`` must be a multiple of
            ``kv_heads`` (grouped-query attention).
        attention_mask: additive float mask broadcastable to ``(batch, heads, q_len, k_len)``:
            0 where allowed, the dtype's minimum where not (see ``additive_mask``).
        scaling: multiplies the scores; default ``head_dim ** -0.5``.

    Returns:
        ``(attn_output, attn_weights)``: ``(batch, q_len, heads, head_dim)`` and
        ``(batch, heads, q_len, k_len)``.
    """
    heads, kv_heads = query.shape[1], key.shape[1]
    if heads % kv_heads:
        raise ValueError(f"query has {heads} heads, not a multiple of the {kv_heads} key/value heads.")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    key_states = repeat_kv(key, heads // kv_heads)
    value_states = repeat_kv(value, heads // kv_heads)

    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling  # (batch, heads, q_len, k_len)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    # softmax in float32: in half precision the exponentials of large scores overflow
    attn_weights = torch.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_output = torch.matmul(attn_weights, value_states)  # (batch, heads, q_len, head_dim)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Split the last dimension in halves ``(x1, x2)`` and return ``(-x2, x1)``.

    Pairing dimension ``i`` with ``i + head_dim/2``, this is a 90-degree turn in each pair's plane.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(
    query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys by their positions: ``x * cos + rotate_half(x) * sin``.

    ``query``/``key`` are ``(batch, heads, seq, head_dim)``; ``cos``/``sin`` are
    ``(batch, seq, head_dim)`` and shared by all heads.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, head_dim)
    return query * cos + rotate_half(query) * sin, key * cos + rotate_half(key) * sin


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cos``/``sin`` tables of default RoPE for these positions.

    Frequency ``i`` is ``theta ** (-2i / head_dim)`` for ``i < head_dim / 2``; each frequency is used
    twice (once per half), matching ``rotate_half``. Returns two ``(batch, seq, head_dim)`` tensors.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = position_ids[..., None].float() * inv_freq.to(position_ids.device)  # (batch, seq, head_dim/2)
    angles = torch.cat((angles, angles), dim=-1)  # (batch, seq, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(q_len, k_len)``, True where query ``i`` may see key ``j``: ``j <= i + (k_len - q_len)``.

    The queries are the last ``q_len`` of ``k_len`` positions (as with a cache).
    """
    k_len = q_len if k_len is None else k_len
    q_idx = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k_idx = torch.arange(k_len, device=device)[None, :]
    return k_idx <= q_idx


def sliding_window_mask(q_len: int, window: int, causal: bool = True) -> torch.Tensor:
    """Boolean ``(q_len, q_len)`` mask of a sliding-window layer, True where query ``i`` may see key ``j``.

    Causal (transformers' ``sliding_window_overlay`` and the causal mask): ``i - window < j <= i``,
    the query and the ``window - 1`` tokens before it. Bidirectional (transformers'
    ``sliding_window_bidirectional_overlay``): ``|i - j| <= window``, so ``window`` tokens on each side.
    Chapter 12 checks both against transformers.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 token; got {window}.")
    offset = torch.arange(q_len)[:, None] - torch.arange(q_len)[None, :]  # i - j
    if causal:
        return (offset >= 0) & (offset < window)
    return offset.abs() <= window


def layer_mask(q_len: int, *, bidirectional: bool, window: int | None = None) -> torch.Tensor:
    """Boolean ``(q_len, q_len)``: what each query of one unpadded sequence may see in one layer.

    Causal or bidirectional, within ``window`` tokens for a sliding-window layer (as
    ``sliding_window_mask``). The explorer and the command line draw it with ``attnviz.plot``,
    which never reads a mask off the weights.
    """
    if window is not None:
        return sliding_window_mask(q_len, window, causal=not bidirectional)
    if bidirectional:
        return torch.ones(q_len, q_len, dtype=torch.bool)
    return causal_mask(q_len)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension: ``x / sqrt(mean(x**2) + eps) * weight``, computed in float32.

    Qwen3 applies it to each head's query and key (``q_norm``, ``k_norm``; chapter 11), Llama to
    the hidden states before each block.
    """
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turn a tokenizer's 2D ``attention_mask`` (1 = token, 0 = padding) into boolean ``(batch, 1, 1, k_len)``."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"expected a 2D (batch, seq) attention_mask of 1s and 0s; got shape {tuple(attention_mask.shape)}."
        )
    return attention_mask.bool()[:, None, None, :]


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask -> transformers' additive float mask: 0 where allowed, ``finfo(dtype).min`` where not.

    The minimum, not ``-inf``: a row with every key masked (a padding query) then softmaxes to
    finite numbers instead of NaN.
    """
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def causal_padding_mask(
    attention_mask: torch.Tensor | None, q_len: int, dtype: torch.dtype = torch.float32, causal: bool = True
) -> torch.Tensor:
    """The 4D additive mask eager attention receives: ``(batch, 1, q_len, k_len)``.

    Combines the causal mask (unless ``causal=False``) with the padding of a 2D ``attention_mask``
    (or none, giving batch 1).
    """
    if attention_mask is None:
        allowed = torch.ones(1, 1, q_len, q_len, dtype=torch.bool)
    else:
        allowed = padding_mask(attention_mask).expand(-1, 1, q_len, -1)
    if causal:
        allowed = allowed & causal_mask(q_len, allowed.shape[-1], device=allowed.device)
    return additive_mask(allowed, dtype)
