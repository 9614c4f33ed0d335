"""Exact attention maps of long inputs: one head's softmax rows, streamed and pooled.

Chapter 14 (``notebooks/14_long_context.ipynb``) explains it. ``capture_attention`` keeps every
weight, ``seq x seq`` per head: 4 GB for one head at 32k tokens in float32. ``attention_map``
recomputes the same rows, a block at a time, from the inputs the layer received (capture's own
hooks and mask handling, ``attnviz.capture.attention_rows``), and keeps only what a picture
needs: the weights pooled to ``size x size`` blocks, and the mean weight at each query - key
offset. Memory grows with ``seq``, not ``seq**2``.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnviz import capture

REDUCTIONS = ("max", "mean")


@dataclass(frozen=True)
class AttentionByDistance:
    """How much attention one head pays at each query - key offset, over a whole sequence.

    ``sums[d + seq - 1]`` is the total weight of every (query, key) pair with ``query - key == d``,
    for ``d`` from ``-(seq - 1)`` (the last key, seen from the first query) to ``seq - 1``; masked
    pairs count with weight 0. Positive offsets are keys before the query.
    """

    sums: torch.Tensor  # (2 * seq - 1,) float64
    seq: int

    def offsets(self) -> torch.Tensor:
        """Every offset ``query - key``, from ``-(seq - 1)`` to ``seq - 1``."""
        return torch.arange(-(self.seq - 1), self.seq)

    def counts(self) -> torch.Tensor:
        """How many (query, key) pairs have each offset: ``seq - |offset|``."""
        return (self.seq - self.offsets().abs()).to(torch.float64)

    def mean(self) -> torch.Tensor:
        """The mean weight at each offset, over every query that has a key at that offset."""
        return self.sums / self.counts()

    def binned(self, per_octave: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """``(offset, mean)`` in logarithmic bins of ``|offset|``, both signs, ordered by offset.

        Offsets 0 and +-1 are bins of their own; beyond, each bin spans ``2 ** (1 / per_octave)``
        times the offsets of the previous one. ``offset`` is the bin's geometric centre (signed),
        ``mean`` the mean weight of all pairs in the bin.
        """
        if per_octave < 1:
            raise ValueError(f"per_octave must be a positive number of bins per doubling; got {per_octave}.")
        sums, counts = self.sums.numpy(), self.counts().numpy()
        centre = self.seq - 1  # index of offset 0
        top = np.log2(max(self.seq - 1, 1))
        starts = np.unique(np.round(2.0 ** (np.arange(0, top * per_octave + 1) / per_octave)).astype(np.int64))
        bounds = np.append(starts[starts <= self.seq - 1], self.seq)  # bin k: starts[k] <= |offset| < bounds[k + 1]
        positions, means = [0.0], [sums[centre] / counts[centre]]
        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            where = np.sqrt(low * (high - 1))
            past = slice(centre + low, centre + high)
            future = slice(centre - high + 1, centre - low + 1)
            positions += [where, -where]
            means += [sums[past].sum() / counts[past].sum(), sums[future].sum() / counts[future].sum()]
        order = np.argsort(positions)
        return np.asarray(positions)[order], np.asarray(means)[order]


class AttentionMap(tuple):
    """What ``attention_map`` returns: the pair ``(pooled, edges)``, with more as attributes.

    Attributes:
        pooled: ``(size, size)`` float32, block ``[i, j]`` pooled over queries
            ``edges[i]:edges[i + 1]`` and keys ``edges[j]:edges[j + 1]``.
        edges: ``(size + 1,)`` int64 token boundaries of the blocks.
        allowed: ``(size, size)`` bool, True where some query of the block may attend to some key
            of it (from the mask the layer applied, not from the weights).
        distance: the mean weight by query - key offset (``AttentionByDistance``), from the same pass.
        reduce, layer, head, seq: how it was made.
    """

    def __new__(cls, pooled, edges, *, allowed, distance, reduce, layer, head):
        made = super().__new__(cls, (pooled, edges))
        made.allowed, made.distance = allowed, distance
        made.reduce, made.layer, made.head, made.seq = reduce, layer, head, int(edges[-1])
        return made

    @property
    def pooled(self) -> torch.Tensor:
        return self[0]

    @property
    def edges(self) -> torch.Tensor:
        return self[1]

    def __repr__(self) -> str:
        size = self.pooled.shape[0]
        return (
            f"AttentionMap(layer {self.layer}, head {self.head}: {self.seq} tokens pooled to {size} x {size} "
            f"by {self.reduce})"
        )


def _diagonal_sums(weights: torch.Tensor) -> torch.Tensor:
    """Sums of ``weights`` (rows, keys) along its diagonals: entry ``u`` adds every ``weights[r, r + u - rows + 1]``.

    Read through a strided view of the tensor itself, not a copy: diagonal ``t = key - row`` of a
    row-major ``(rows, keys)`` matrix is a run with stride ``keys + 1``. Only the two corners,
    where a diagonal would run off the matrix, go through a small zero-padded copy, in which each
    row is shifted so that the diagonals become columns.
    """
    rows, keys = weights.shape
    weights = weights.contiguous()
    if keys < 2 * rows:  # small: pad each row so that every diagonal becomes a column
        padded = weights.new_zeros(rows, keys + 2 * rows)
        padded[:, rows - 1 : rows - 1 + keys] = weights
        return padded.as_strided((rows, keys + rows - 1), (padded.stride(0) + 1, 1)).sum(0)
    inner = weights.as_strided((rows, keys - rows + 1), (keys + 1, 1), weights.storage_offset()).sum(0)
    left = _diagonal_sums(weights[:, : rows - 1])[: rows - 1]  # diagonals -(rows - 1) .. -1
    right = _diagonal_sums(weights[:, keys - rows + 1 :])[rows - 1 :]  # the last rows - 1 diagonals
    return torch.cat([left, inner, right])


class _Pool:
    """Block-max or block-mean pooling of a stream of row blocks into ``size x size``."""

    def __init__(self, seq: int, size: int, reduce: str, device=None):
        self.seq, self.size, self.reduce = seq, size, reduce
        self.edges = torch.arange(size + 1) * seq // size  # as even as whole tokens allow
        widths = self.edges.diff()
        self.block_of = torch.repeat_interleave(torch.arange(size), widths)  # the block of each token
        self.widest = int(widths.max())
        self.uniform = seq % size == 0
        # the accumulators live where the weights are computed (a GPU's blocks are never copied
        # back); the token bookkeeping above stays on the CPU, where int() of it costs nothing.
        # Sums in float64, so the mean of a 64-token-wide block of a 32k map loses nothing
        self.values = torch.zeros(size, size, dtype=torch.float64 if reduce == "mean" else torch.float32, device=device)
        self.allowed = torch.zeros(size, size, dtype=torch.bool, device=device)
        self.offset_sums = torch.zeros(2 * seq - 1, dtype=torch.float64, device=device)

    def widen(self, key_start: int, key_stop: int) -> tuple[int, int]:
        """The key range grown to whole blocks."""
        return int(self.edges[self.block_of[key_start]]), int(self.edges[self.block_of[key_stop - 1] + 1])

    def _blocks(self, x: torch.Tensor, start: int, reduce: str, dim: int) -> torch.Tensor:
        """Reduce dimension ``dim`` of ``x``, whose entries there are tokens ``start:``, block by block.

        Blocks the tokens cover only in part are reduced over that part.
        """
        tokens, width = x.shape[dim], self.widest
        if self.uniform and start % width == 0 and tokens % width == 0:
            blocks = x.unflatten(dim, (tokens // width, width))  # a view
        else:  # lay the tokens out block by block at the widest width, padded with zeros
            token = torch.arange(start, start + tokens)
            block = self.block_of[token] - self.block_of[start]
            place = (block * width + token - self.edges[self.block_of[token]]).to(x.device)
            shape = list(x.shape)
            shape[dim] = (int(block[-1]) + 1) * width
            blocks = x.new_zeros(shape).index_copy_(dim, place, x).unflatten(dim, (-1, width))
        # zeros are neutral for both: weights are never negative
        return blocks.amax(dim + 1) if reduce == "max" else blocks.sum(dim + 1)

    def _pool(self, x: torch.Tensor, start: int, key_start: int, reduce: str) -> torch.Tensor:
        """(rows, keys) from query ``start`` and key ``key_start`` -> (row blocks, key blocks).

        Rows first: that reduction runs along whole contiguous rows, and leaves a block's height
        fewer entries for the second one.
        """
        return self._blocks(self._blocks(x, start, reduce, 0), key_start, reduce, 1)

    def add(self, block: capture.RowBlock) -> None:
        weights = block.weights[0, 0]  # (rows, keys): one sequence, one head
        rows, keys = weights.shape
        first, last = int(self.block_of[block.key_start]), int(self.block_of[block.key_start + keys - 1]) + 1
        top, bottom = int(self.block_of[block.start]), int(self.block_of[block.stop - 1]) + 1

        pooled = self._pool(weights, block.start, block.key_start, self.reduce)  # (bottom - top, last - first)
        target = self.values[top:bottom, first:last]
        if self.reduce == "max":
            self.values[top:bottom, first:last] = torch.maximum(target, pooled)
        else:
            target += pooled.to(torch.float64)

        mask = block.mask
        if mask.allowed is None:
            self.allowed[top:bottom, first:last] = True
        else:
            if mask.allowed_start > block.key_start:  # keys before allowed_start are open to every row
                self.allowed[top:bottom, first : int(self.block_of[mask.allowed_start - 1]) + 1] = True
            allowed = mask.allowed[0, 0].expand(rows, -1)
            opened = int(self.block_of[mask.allowed_start])
            self.allowed[top:bottom, opened:last] |= self._pool(allowed, block.start, mask.allowed_start, "max")

        # offset d = query - key of entry (r, c) is (start - key_start) + r - c; _diagonal_sums runs
        # over c - r from -(rows - 1) up, so its flip runs over d upwards from start - key_start - keys + 1
        low = block.start - block.key_start - keys + 1 + self.seq - 1
        self.offset_sums[low : low + keys + rows - 1] += _diagonal_sums(weights).flip(0).to(torch.float64)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pooled map, which blocks are allowed, the sums by offset: small, on the CPU."""
        pooled = self.values.cpu()
        if self.reduce == "mean":
            widths = self.edges.diff().to(torch.float64)
            pooled = pooled / (widths[:, None] * widths[None, :])
        return pooled.to(torch.float32), self.allowed.cpu(), self.offset_sums.cpu()


def attention_map(
    model: nn.Module,
    *,
    layer: int,
    head: int,
    size: int = 512,
    reduce: str = "max",
    rows: int | None = None,
    **inputs,
) -> AttentionMap:
    """One head's exact attention weights over a long input, pooled to ``size x size`` blocks.

    The model runs once on its own backend (eager, sdpa, flex, flash), as ``model(**inputs)``,
    patched or not (``attnviz.bidirectional``, ``attnviz.no_rope``), and stops before ``layer``'s
    attention: the later layers never run. From what that layer received (hidden states, cos/sin,
    the mask in the form its backend got, the sliding window, QK-norm), the softmax rows of ``head``
    are recomputed ``rows`` at a time, pooled, and dropped. The pooled map equals block-max (or
    block-mean) pooling of ``capture_attention``'s weights for that head, without ever holding
    ``seq x seq``: memory grows linearly with the input.

    Args:
        model: a Llama-family model (Llama, Mistral, Qwen2, Qwen3) or a wrapper of one.
        layer, head: which layer and query head (negative indices count from the end).
        size: blocks per side; at most ``seq`` (one token per block), which it is capped to.
        reduce: ``"max"`` (a block shows its strongest weight: a single sharp link stays visible)
            or ``"mean"`` (a block shows its average weight: mass, not peaks).
        rows: query rows per step of the computation; by default as many as keep one step's
            scores within 64 MB (512 rows at 32k tokens). Memory grows with ``rows x seq``.
        inputs: one sequence (batch size 1), as you would pass it to the model: ``input_ids`` or
            ``inputs_embeds``, ``attention_mask``, ``position_ids``, ... A KV cache is refused.

    The forward up to ``layer`` is the model's own: on eager attention it builds ``seq x seq``
    masks and weights (refused with a ``MemoryError`` when they cannot fit), and sdpa builds a
    boolean ``seq x seq`` mask for sliding windows and padding. For long inputs use sdpa or flex.

    Returns:
        ``AttentionMap``, which unpacks as ``pooled, edges = attention_map(...)``: ``pooled`` is a
        ``(size, size)`` float32 tensor, ``edges`` the ``size + 1`` token boundaries of its blocks
        (evenly spaced when ``size`` divides the length). Its ``.allowed`` says which blocks the mask
        lets attend at all, and ``.distance`` holds the mean weight by query - key offset.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduce!r}.")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size is the number of blocks per side, a positive integer; got {size!r}.")
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be a positive number of query rows per block; got {rows}.")
    backbone, backend, modules = capture.check_call(model, inputs, "attention_map")
    (layer,) = capture.layer_indices([layer], len(modules))
    (head,) = capture.head_indices([head], backbone.config.num_attention_heads)
    capture.check_forward_memory(inputs, backbone, backend, layer, "attention_map")

    recorded = capture.run_layers(model, modules, {layer}, inputs)[layer]
    batch, seq = recorded["hidden_states"].shape[:2]
    if batch != 1:
        raise ValueError(
            f"attention_map draws one sequence; got a batch of {batch}. Pass one row, e.g. "
            "input_ids=ids[i : i + 1] (and the same row of attention_mask)."
        )
    pool = _Pool(seq, min(size, seq), reduce, recorded["hidden_states"].device)
    if rows is None:
        # as many rows as keep a step's scores within capture.BLOCK_ELEMENTS (512 rows at 32k tokens),
        # in whole blocks of the map, so that pooling works on views
        rows = capture.block_rows(1, seq)
        rows = max(rows // pool.widest, 1) * pool.widest
    with torch.no_grad():
        for block in capture.attention_rows(modules[layer], recorded, backend, [head], rows, widen=pool.widen):
            pool.add(block)
    del recorded
    pooled, allowed, offset_sums = pool.result()
    return AttentionMap(
        pooled,
        pool.edges,
        allowed=allowed,
        distance=AttentionByDistance(offset_sums, seq),
        reduce=reduce,
        layer=layer,
        head=head,
    )
