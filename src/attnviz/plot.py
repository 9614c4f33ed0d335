"""Attention heatmaps. Every function returns a matplotlib ``Figure`` and shows nothing itself.

Chapter 1 (``notebooks/01_llama_attention.ipynb``) introduces ``heatmap``.
"""

from collections.abc import Sequence

import numpy as np
import torch

# Above this many tokens the labels overlap and single cells can no longer be read.
MAX_TOKENS = 128

MASKED_COLOR = "#d9d9d9"


def _as_2d_array(weights, name: str = "weights") -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to(torch.float32).cpu().numpy()
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"heatmap draws one head, so {name} must have shape (q_len, k_len); got shape "
            f"{tuple(array.shape)}. From a model's attentions pick one layer, batch row and head, "
            "e.g. outputs.attentions[layer][0, head]."
        )
    return array


def _check_tokens(tokens: Sequence[str] | None, q_len: int, k_len: int) -> tuple[list[str], list[str]]:
    if tokens is None:
        return [str(i) for i in range(q_len)], [str(i) for i in range(k_len)]
    tokens = [str(t) for t in tokens]
    if len(tokens) != k_len:
        raise ValueError(
            f"got {len(tokens)} token labels for {k_len} key positions; pass exactly one label per "
            "position, e.g. tokenizer.convert_ids_to_tokens(input_ids[0]), or tokens=None for indices."
        )
    # With a cache the queries are the last q_len positions of the keys.
    return tokens[k_len - q_len :], tokens


def _new_figure(figsize):
    """Make a Figure that a notebook shows exactly once: when it is returned from a cell.

    Making it through pyplot loads the notebook's inline backend, which teaches IPython to
    display Figure objects; closing it at once keeps pyplot from showing it a second time.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _prepare(weights, tokens, mask, max_tokens, name="weights"):
    """Validate one head's weights; return (array, masked, q_labels, k_labels)."""
    array = _as_2d_array(weights, name)
    q_len, k_len = array.shape
    if max_tokens is not None and max(q_len, k_len) > max_tokens:
        raise ValueError(
            f"a {q_len} x {k_len} heatmap is too large to read (limit {max_tokens} tokens). Slice a "
            "window, e.g. heatmap(weights[:64, :64], tokens[:64]), or pass max_tokens=None to draw "
            "it anyway."
        )
    q_labels, k_labels = _check_tokens(tokens, q_len, k_len)
    if mask is None:
        masked = array == 0.0
    else:
        masked = ~_as_2d_array(mask, "mask").astype(bool)
        if masked.shape != array.shape:
            raise ValueError(f"mask has shape {masked.shape} but {name} have shape {array.shape}.")
    return array, masked, q_labels, k_labels


def _draw(ax, array, masked, q_labels, k_labels, vmin, vmax, cmap="viridis", title=None, labels=True):
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad=MASKED_COLOR)
    image = ax.imshow(
        np.ma.masked_array(array, mask=masked),
        cmap=colormap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        aspect="auto",
    )
    ax.set_xticks(range(len(k_labels)), k_labels, rotation=90)
    ax.set_yticks(range(len(q_labels)), q_labels)
    if labels:
        ax.set_xlabel("key position (attended to)")
        ax.set_ylabel("query position (attending)")
    if title:
        ax.set_title(title)
    return image


def _masked_legend(ax):
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(facecolor=MASKED_COLOR, edgecolor="black", label="masked")],
        loc="upper right",
        fontsize="small",
    )


def _range(arrays_and_masks):
    visible = [a[~m] for a, m in arrays_and_masks if (~m).any()]
    if not visible:
        return 0.0, 1.0
    values = np.concatenate(visible)
    return float(min(values.min(), 0.0)), float(values.max())


def heatmap(
    weights,
    tokens: Sequence[str] | None = None,
    ax=None,
    *,
    mask=None,
    title: str | None = None,
    colorbar_label: str = "attention weight",
    vmin: float | None = None,
    vmax: float | None = None,
    max_tokens: int | None = MAX_TOKENS,
):
    """Draw one head's attention as a (query x key) heatmap and return its Figure.

    Args:
        weights: a ``(q_len, k_len)`` tensor or array, e.g. ``outputs.attentions[0][0, head]``.
        tokens: one label per key position, drawn on both axes; ``None`` draws position indices.
        ax: a matplotlib Axes to draw into; by default a new Figure is made.
        mask: optional boolean ``(q_len, k_len)``, True where the query may attend. Without it,
            a cell whose weight is exactly 0 counts as masked: that is what a masked score becomes
            after softmax, while an unmasked one stays positive however small.
        title, colorbar_label, vmin, vmax: labelling and colour range.
        max_tokens: refuse sequences longer than this (labels stop being readable); ``None`` lifts it.

    Masked cells are drawn in flat grey, outside the colour scale, so they never look like
    weights that are merely close to zero.
    """
    array, masked, q_labels, k_labels = _prepare(weights, tokens, mask, max_tokens)
    q_len, k_len = array.shape
    if ax is None:
        ax = _new_figure(figsize=(1.6 + 0.32 * k_len, 1.0 + 0.3 * q_len)).add_subplot()
    fig = ax.figure
    low, high = _range([(array, masked)])
    image = _draw(ax, array, masked, q_labels, k_labels, low if vmin is None else vmin, high if vmax is None else vmax)
    fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.9)
    if title:
        ax.set_title(title)
    if masked.any():
        _masked_legend(ax)
    return fig


def _check_attentions(attentions, layer: int, batch: int):
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, (tuple, list)):
        raise ValueError(
            "attentions must be a tuple with one (batch, heads, q_len, k_len) tensor per layer, as "
            "returned by attnviz.capture_attention(model, ...) or model(..., output_attentions=True).attentions."
        )
    if not attentions:
        raise ValueError(
            "attentions is empty: the backend returned no weights (sdpa, flex and flash never do). "
            "Use attnviz.capture_attention(model, ...), which works with any backend."
        )
    if not -len(attentions) <= layer < len(attentions):
        raise ValueError(
            f"layer {layer} does not exist: the model has {len(attentions)} layers (0-{len(attentions) - 1})."
        )
    weights = attentions[layer]
    if weights is None or weights.dim() != 4:
        raise ValueError(
            f"layer {layer} holds {None if weights is None else tuple(weights.shape)}, not a "
            "(batch, heads, q_len, k_len) tensor of weights. Use attnviz.capture_attention(model, ...)."
        )
    if not 0 <= batch < weights.shape[0]:
        raise ValueError(f"batch index {batch} is out of range for a batch of {weights.shape[0]}.")
    return weights[batch]


def head_grid(
    attentions,
    layer: int,
    tokens: Sequence[str] | None = None,
    *,
    batch: int = 0,
    ncols: int = 4,
    title: str | None = None,
    max_tokens: int | None = MAX_TOKENS,
):
    """Draw every head of one layer side by side on one colour scale; return the Figure.

    Args:
        attentions: one ``(batch, heads, q_len, k_len)`` tensor per layer, from
            ``attnviz.capture_attention`` or ``outputs.attentions``.
        layer: which layer to draw.
        tokens: one label per key position, or ``None`` for indices.
        batch: which sequence of the batch.
    """
    per_head = _check_attentions(attentions, layer, batch)  # (heads, q_len, k_len)
    heads = per_head.shape[0]
    prepared = [_prepare(per_head[h], tokens, None, max_tokens, f"head {h}") for h in range(heads)]
    q_len, k_len = prepared[0][0].shape
    ncols = max(1, min(ncols, heads))
    nrows = -(-heads // ncols)
    cell = 0.22 * max(q_len, k_len) + 1.0
    fig = _new_figure(figsize=(cell * ncols + 1.2, cell * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    low, high = _range([(a, m) for a, m, _, _ in prepared])
    image = None
    for h, (array, masked, q_labels, k_labels) in enumerate(prepared):
        ax = axes[h // ncols][h % ncols]
        image = _draw(ax, array, masked, q_labels, k_labels, low, high, title=f"head {h}", labels=False)
        if h % ncols:
            ax.set_yticklabels([])
    for h in range(heads, nrows * ncols):
        axes[h // ncols][h % ncols].set_visible(False)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    fig.supxlabel("key position (attended to)")
    fig.supylabel("query position (attending)")
    fig.suptitle(title or f"Layer {layer}: all {heads} heads")
    if any(m.any() for _, m, _, _ in prepared):
        _masked_legend(axes[0][0])
    return fig


def compare(
    before,
    after,
    tokens: Sequence[str] | None = None,
    *,
    titles: Sequence[str] = ("before", "after"),
    diff: bool = True,
    row_titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    max_tokens: int | None = MAX_TOKENS,
):
    """Put attention maps before and after a change side by side on one colour scale; return the Figure.

    With ``diff=True`` a last column shows ``after - before`` on a diverging scale centred on 0
    (red: more weight after, blue: less). Cells masked in both maps are grey everywhere.

    Args:
        before, after: ``(q_len, k_len)`` weights of the same shape, or two lists of such maps, one
            row per pair (e.g. RoPE and NoRoPE rows of a causal/bidirectional comparison: a 2x2 grid).
        tokens: one label per key position, or ``None`` for indices.
        titles: the two column titles.
        row_titles: one label per row, when lists are given.
    """
    if len(titles) != 2:
        raise ValueError(f"titles needs two entries, for before and after; got {len(titles)}.")
    rows_given = isinstance(before, (list, tuple))
    befores = list(before) if rows_given else [before]
    afters = list(after) if isinstance(after, (list, tuple)) else [after]
    if len(befores) != len(afters):
        raise ValueError(f"got {len(befores)} 'before' maps and {len(afters)} 'after' maps; pair them one to one.")
    if row_titles is not None and len(row_titles) != len(befores):
        raise ValueError(f"got {len(row_titles)} row titles for {len(befores)} rows.")
    pairs = []
    for a_map, b_map in zip(befores, afters, strict=True):
        a, masked_a, q_labels, k_labels = _prepare(a_map, tokens, None, max_tokens, "before")
        b, masked_b, _, _ = _prepare(b_map, tokens, None, max_tokens, "after")
        if a.shape != b.shape:
            raise ValueError(f"before has shape {a.shape} and after {b.shape}: compare needs maps of the same shape.")
        pairs.append((a, masked_a, b, masked_b))
    q_len, k_len = pairs[0][0].shape
    columns = 3 if diff else 2
    cell = min(0.28 * max(q_len, k_len) + 1.2, 5.0)
    fig = _new_figure(figsize=(cell * columns + 1.5, (cell + 0.3) * len(pairs) + 0.3))
    grid = fig.subplots(len(pairs), columns, squeeze=False)
    low, high = _range([(a, ma) for a, ma, _, _ in pairs] + [(b, mb) for _, _, b, mb in pairs])
    deltas = [(b - a, ma & mb) for a, ma, b, mb in pairs]
    span = max((float(np.abs(d[~m]).max()) for d, m in deltas if (~m).any()), default=1.0) or 1.0
    image = diff_image = None
    for row, ((a, masked_a, b, masked_b), (delta, both)) in enumerate(zip(pairs, deltas, strict=True)):
        label = f"{row_titles[row]}: " if row_titles else ""
        axes = grid[row]
        image = _draw(axes[0], a, masked_a, q_labels, k_labels, low, high, title=label + titles[0])
        _draw(axes[1], b, masked_b, q_labels, k_labels, low, high, title=label + titles[1])
        if masked_a.any() or masked_b.any():
            _masked_legend(axes[0])
        if diff:
            diff_image = _draw(
                axes[2], delta, both, q_labels, k_labels, -span, span, cmap="RdBu_r", title=label + "after - before"
            )
    fig.colorbar(image, ax=list(grid[:, :2].flat), label="attention weight", shrink=0.85)
    if diff:
        fig.colorbar(diff_image, ax=list(grid[:, 2]), label="change in weight", shrink=0.85)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def panels(
    maps: Sequence,
    titles: Sequence[str],
    tokens=None,
    *,
    masks: Sequence | None = None,
    share_scale: bool = False,
    colorbar_label: str = "attention weight",
    suptitle: str | None = None,
    max_tokens: int | None = MAX_TOKENS,
):
    """Draw several ``(q_len, k_len)`` maps in a row, e.g. one head at several stages; return the Figure.

    Args:
        maps: the 2D maps (weights or scores).
        titles: one title per map.
        tokens: labels for every map (a list of strings), one list per map (a list of lists),
            or ``None`` for indices.
        masks: one boolean mask per map (True = may attend) or ``None`` entries. Pass them for
            score maps: only probabilities have "exactly 0 means masked".
        share_scale: one colour range for all maps (compare values) or one each (compare patterns).
    """
    if len(titles) != len(maps):
        raise ValueError(f"got {len(maps)} maps but {len(titles)} titles; give one title per map.")
    if not maps:
        raise ValueError("panels needs at least one map.")
    masks = [None] * len(maps) if masks is None else list(masks)
    if len(masks) != len(maps):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks; use None for a map without one.")
    if tokens is None or (len(tokens) and isinstance(tokens[0], str)):
        per_map_tokens = [tokens] * len(maps)
    else:
        per_map_tokens = list(tokens)
        if len(per_map_tokens) != len(maps):
            raise ValueError(f"got {len(per_map_tokens)} token lists for {len(maps)} maps.")
    prepared = [
        _prepare(m, t, k, max_tokens, f"map {i}")
        for i, (m, t, k) in enumerate(zip(maps, per_map_tokens, masks, strict=True))
    ]
    q_len, k_len = prepared[0][0].shape
    cell = min(0.28 * max(q_len, k_len) + 1.6, 5.5)
    fig = _new_figure(figsize=(cell * len(maps) + 0.4, cell + 0.5))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    shared = _range([(a, m) for a, m, _, _ in prepared]) if share_scale else None
    for ax, (array, masked, q_labels, k_labels), title in zip(axes, prepared, titles, strict=True):
        low, high = shared or _range([(array, masked)])
        image = _draw(ax, array, masked, q_labels, k_labels, low, high, title=title)
        if not share_scale:
            fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.85)
        if masked.any():
            _masked_legend(ax)
    if share_scale:
        fig.colorbar(image, ax=list(axes), label=colorbar_label, shrink=0.85)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def curves(
    x,
    series: dict,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    marker: str | None = None,
):
    """Plot one or more curves over the same ``x`` with labelled axes and a legend; return the Figure."""
    if not series:
        raise ValueError("curves needs at least one series, e.g. {'label': values}.")
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    fig = _new_figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for label, values in series.items():
        y = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"series {label!r} has {y.shape[0] if y.ndim else 0} values for {x.shape[0]} x values.")
        ax.plot(x, y, label=label, marker=marker)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1 or next(iter(series)):
        ax.legend()
    return fig


def gqa_groups(num_attention_heads: int, num_key_value_heads: int, title: str | None = None):
    """Draw which query heads share which key/value head (grouped-query attention); return the Figure.

    Query head ``h`` reads key/value head ``h // (num_attention_heads // num_key_value_heads)``,
    the order ``repeat_kv`` produces. Chapter 3 explains it.
    """
    if num_attention_heads <= 0 or num_key_value_heads <= 0 or num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"num_attention_heads ({num_attention_heads}) must be a positive multiple of "
            f"num_key_value_heads ({num_key_value_heads})."
        )
    import matplotlib

    groups = num_attention_heads // num_key_value_heads
    colors = matplotlib.colormaps["tab10"]
    width = max(4.0, 0.35 * num_attention_heads + 1.5)
    fig = _new_figure(figsize=(width, 2.4))
    ax = fig.add_subplot()
    q_x = np.arange(num_attention_heads)
    kv_x = (np.arange(num_key_value_heads) + 0.5) * groups - 0.5  # under the middle of its group
    for h in range(num_attention_heads):
        kv = h // groups
        ax.plot([q_x[h], kv_x[kv]], [1, 0], color=colors(kv % 10), alpha=0.6)
    ax.scatter(q_x, np.ones_like(q_x), s=120, marker="s", c=[colors((h // groups) % 10) for h in q_x], zorder=3)
    ax.scatter(
        kv_x, np.zeros_like(kv_x), s=260, marker="o", c=[colors(k % 10) for k in range(num_key_value_heads)], zorder=3
    )
    ax.set_yticks([0, 1], ["key/value heads", "query heads"])
    ax.set_xticks([])
    ax.set_ylim(-0.4, 1.4)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    kind = "multi-head" if groups == 1 else "multi-query" if num_key_value_heads == 1 else "grouped-query"
    ax.set_title(
        title
        or f"{kind} attention: {num_attention_heads} query heads, {num_key_value_heads} key/value heads "
        f"({groups} per group)"
    )
    return fig


# -- long inputs: pooled maps and attention by distance (chapter 12) --------------------------
def _tokens_label(x, _position=None) -> str:
    """A token position or offset for an axis: 8192 -> '8k', 1536 -> '1.5k', 100 -> '100'."""
    if abs(x) >= 1024:
        return f"{x / 1024:g}k"
    return f"{x:g}"


def _token_axis(axis, seq: int) -> None:
    """Ticks at round token counts (a power of two, 3 to 8 of them), labelled in k."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = 2 ** max(0, int(np.floor(np.log2(max(seq, 4) / 4))))
    axis.set_major_locator(MultipleLocator(step))
    axis.set_major_formatter(FuncFormatter(_tokens_label))


def _as_pooled(item, name: str):
    """(pooled array, edges array, masked array or None) of one map: an AttentionMap or a (pooled, edges) pair."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(
            f"{name} must be what attnviz.attention_map returns (or a (pooled, edges) pair); got {type(item).__name__}."
        )
    pooled = _as_2d_array(item[0], f"{name}'s pooled weights")
    edges = np.asarray(item[1].cpu() if isinstance(item[1], torch.Tensor) else item[1], dtype=np.int64)
    if pooled.shape[0] != pooled.shape[1] or edges.shape != (pooled.shape[0] + 1,):
        raise ValueError(
            f"{name}: a pooled map is (size, size) with size + 1 edges; got {pooled.shape} and {edges.shape[0]} edges."
        )
    allowed = getattr(item, "allowed", None)
    masked = None if allowed is None else ~np.asarray(allowed.cpu(), dtype=bool)
    return pooled, edges, masked


def _draw_pooled(ax, pooled, edges, masked, norm, title):
    import matplotlib
    from matplotlib.colors import LogNorm

    colormap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOR)
    if isinstance(norm, LogNorm):  # an allowed block whose weights all underflowed to 0: the lowest colour
        pooled = np.where(pooled > 0, pooled, norm.vmin)
    data = np.ma.masked_array(pooled, mask=np.zeros_like(pooled, dtype=bool) if masked is None else masked)
    widths = np.diff(edges)
    if (widths == widths[0]).all():
        image = ax.imshow(
            data,
            cmap=colormap,
            norm=norm,
            interpolation="nearest",
            extent=(edges[0], edges[-1], edges[-1], edges[0]),
            aspect="equal",
        )
    else:  # blocks of unequal width: draw each at its own size
        image = ax.pcolormesh(edges, edges, data, cmap=colormap, norm=norm, rasterized=True)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(edges[-1], edges[0])
        ax.set_aspect("equal")
    seq = int(edges[-1])
    _token_axis(ax.xaxis, seq)
    _token_axis(ax.yaxis, seq)
    ax.set_xlabel("key position (tokens)")
    ax.set_ylabel("query position (tokens)")
    if title:
        ax.set_title(title)
    return image


def pooled_map(
    maps,
    titles: Sequence[str] | None = None,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    suptitle: str | None = None,
    ax=None,
):
    """Draw pooled attention maps of long inputs, from ``attnviz.attention_map``; return the Figure.

    Axes are token positions (ticks in k), so a map of 32k tokens pooled to 512 x 512 reads like
    the sequence itself. Blocks where the mask lets no query attend to any key are flat grey,
    outside the colour scale (known from the mask, never guessed from a weight).

    Args:
        maps: one ``AttentionMap`` (or a ``(pooled, edges)`` pair), or a list of one or two, drawn
            side by side on one colour scale.
        titles: one title per map.
        log: a logarithmic colour scale, from the smallest positive weight (at least ``vmax / 1e6``)
            up: far, faint attention becomes visible next to the sharp local peaks.
        vmin, vmax: the colour range, by default that of the allowed blocks.
        ax: draw one map into this Axes instead of a new Figure.
    """
    from matplotlib.colors import LogNorm, Normalize

    several = isinstance(maps, (list, tuple)) and len(maps) > 0 and isinstance(maps[0], (list, tuple))
    items = list(maps) if several else [maps]
    if not 1 <= len(items) <= 2:
        raise ValueError(f"pooled_map draws one or two maps side by side (to fit the page); got {len(items)}.")
    if ax is not None and len(items) != 1:
        raise ValueError("pass one map with ax=...; two maps make their own Figure.")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"got {len(items)} maps but {len(titles)} titles; give one title per map.")
    prepared = [_as_pooled(item, f"map {i}") for i, item in enumerate(items)]
    visible = np.concatenate([p[~m].ravel() if m is not None else p.ravel() for p, _, m in prepared])
    high = float(visible.max()) if visible.size else 1.0
    high = vmax if vmax is not None else (high or 1.0)
    if log:
        positive = visible[visible > 0]
        low = float(positive.min()) if positive.size else high * 1e-6
        norm = LogNorm(vmin=vmin if vmin is not None else max(low, high * 1e-6), vmax=high)
    else:
        norm = Normalize(vmin=0.0 if vmin is None else vmin, vmax=high)
    if ax is None:
        fig = _new_figure(figsize=(6.8, 3.5) if len(items) == 2 else (4.6, 3.9))
        axes = fig.subplots(1, len(items), squeeze=False)[0]
    else:
        fig, axes = ax.figure, [ax]
    image = None
    for i, (axis, (pooled, edges, masked)) in enumerate(zip(axes, prepared, strict=True)):
        image = _draw_pooled(axis, pooled, edges, masked, norm, titles[i] if titles else None)
        if i:
            axis.set_ylabel("")
    how = getattr(items[0], "reduce", None)
    label = "attention weight" + (f" (block {how})" if how else "")
    fig.colorbar(image, ax=list(axes), label=label, shrink=0.85)
    if any(m is not None and m.any() for _, _, m in prepared):
        _masked_legend(axes[0])
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _distance_of(item, label: str):
    distance = getattr(item, "distance", item)
    if not hasattr(distance, "binned"):
        raise ValueError(
            f"series {label!r} must be what attnviz.attention_map returns, or its .distance; got {type(item).__name__}."
        )
    return distance


def attention_by_distance(
    series: dict,
    *,
    per_octave: int = 4,
    title: str | None = None,
    ax=None,
):
    """Plot the mean attention weight against the offset query - key, log-binned; return the Figure.

    One curve per entry of ``series`` (label -> ``AttentionMap`` or its ``.distance``). The x axis is
    logarithmic on both sides of 0 (keys before the query on the right, after it on the left), the y
    axis logarithmic: a local window shows as weight that stops at its width, a strong previous-token
    head as a peak at offset 1, and a head that ignores positions as a flat line. Offsets where every
    weight is 0 (masked) leave a gap.
    """
    if not series:
        raise ValueError("attention_by_distance needs at least one series, e.g. {'RoPE': attention_map(...)}.")
    curves_ = {label: _distance_of(item, label).binned(per_octave) for label, item in series.items()}
    if ax is None:
        ax = _new_figure(figsize=(6.8, 3.3)).add_subplot()
    fig = ax.figure
    from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

    both_ways = False  # does any curve have weight on keys after the query?
    for label, (offset, mean) in curves_.items():
        shown = np.where(mean > 0, mean, np.nan)  # log scale: a masked offset leaves a gap
        ax.plot(offset, shown, marker="o", markersize=3, label=label)
        both_ways |= bool((mean[offset < 0] > 0).any())
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(SymmetricalLogLocator(base=8, linthresh=1.0))  # 1, 8, 64, 512, 4k, 32k
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens_label))
    ax.axvline(0, color="0.6", linewidth=0.8)
    after = ", < 0: after it" if both_ways else ""
    ax.set_xlabel(f"query − key position (tokens; > 0: key before the query{after})")
    ax.set_ylabel("mean attention weight")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if len(series) > 1 or next(iter(series)):
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def map_and_distance(result, *, log: bool = False, title: str | None = None):
    """One ``attnviz.attention_map`` result as two panels: the pooled map and its attention by distance."""
    fig = _new_figure(figsize=(6.8, 3.3))
    left, right = fig.subplots(1, 2, width_ratios=(1.0, 1.15))
    pooled_map(result, log=log, ax=left)
    attention_by_distance({"": result}, ax=right)
    right.set_ylabel("mean weight")
    right.set_xlabel("query − key position (tokens)")
    if title:
        fig.suptitle(title)
    return fig
