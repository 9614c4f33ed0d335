"""Attention heatmaps. Every function returns a matplotlib ``Figure`` and shows nothing itself.

Chapter 1 (``notebooks/01_llama_attention.ipynb``) introduces ``heatmap``.

Figures are sized for the book's text column, about 690 px at 100 dpi: at most ``COLUMN`` inches
wide, at most two panels in a row (more wrap to new rows), one colour bar per colour scale, and
text of at least 9 points, so that nothing is shrunk on the page until it cannot be read. Token
labels thin out (every second or third token) when a panel is too narrow to print them all.

Which cells are masked is never guessed from the weights: a weight that underflowed to exactly 0
in float32 (``exp(-104)`` is 0.0) is still a weight. Pass the mask (True = may attend) and the
cells it forbids are drawn grey, outside the colour scale; without one, every cell is a weight.
"""

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

COLUMN = 6.9  # inches: the book's text column at 100 dpi
FONT = 10  # points
# the rc settings every figure here is made under
STYLE = {
    "font.size": FONT,
    "axes.titlesize": FONT + 1,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT - 1,
    "ytick.labelsize": FONT - 1,
    "legend.fontsize": FONT - 1,
    "figure.titlesize": FONT + 2,
    "figure.dpi": 100,
}

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


def _column_style(function):
    """Make the figure under ``STYLE`` (font sizes are fixed when text is created)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def _new_figure(figsize):
    """Make a Figure that a notebook shows exactly once: when it is returned from a cell.

    Making it through pyplot loads the notebook's inline backend, which teaches IPython to
    display Figure objects; closing it at once keeps pyplot from showing it a second time.
    The width is capped at the book's column.
    """
    import matplotlib.pyplot as plt

    width, height = figsize
    fig = plt.figure(figsize=(min(width, COLUMN), height), layout="constrained")
    plt.close(fig)
    return fig


def _label_step(n_labels: int, axis_inches: float) -> int:
    """Print every n-th token label so labels of FONT - 1 points do not overlap on an axis this long."""
    needed = n_labels * (FONT - 1) * 1.5 / 72  # inches: the label height plus a little air
    return max(1, math.ceil(needed / max(axis_inches, 0.1)))


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
        masked = np.zeros(array.shape, dtype=bool)  # nothing is known to be masked: draw every value
    else:
        masked = ~_as_2d_array(mask, "mask").astype(bool)
        if masked.shape != array.shape:
            raise ValueError(f"mask has shape {masked.shape} but {name} have shape {array.shape}.")
    return array, masked, q_labels, k_labels


def _draw(ax, array, masked, q_labels, k_labels, vmin, vmax, cmap="viridis", title=None, labels=True, axis_inches=None):
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
    step = _label_step(max(len(k_labels), len(q_labels)), axis_inches or COLUMN)
    ax.set_xticks(range(0, len(k_labels), step), k_labels[::step], rotation=90)
    ax.set_yticks(range(0, len(q_labels), step), q_labels[::step])
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
    )


def _range(arrays_and_masks):
    visible = [a[~m] for a, m in arrays_and_masks if (~m).any()]
    if not visible:
        return 0.0, 1.0
    values = np.concatenate(visible)
    return float(min(values.min(), 0.0)), float(values.max())


@_column_style
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
        mask: optional boolean ``(q_len, k_len)``, True where the query may attend; the cells it
            forbids are drawn grey. Without it every cell is drawn as a weight, zeros included:
            a weight can underflow to exactly 0 without being masked, so zeros prove nothing.
        title, colorbar_label, vmin, vmax: labelling and colour range.
        max_tokens: refuse sequences longer than this (labels stop being readable); ``None`` lifts it.

    Masked cells are drawn in flat grey, outside the colour scale, so they never look like
    weights that are merely close to zero.
    """
    array, masked, q_labels, k_labels = _prepare(weights, tokens, mask, max_tokens)
    q_len, k_len = array.shape
    if ax is None:
        width = min(COLUMN, 2.4 + 0.24 * k_len)
        ax = _new_figure(figsize=(width, min(COLUMN, 1.4 + 0.24 * q_len))).add_subplot()
    fig = ax.figure
    axis_inches = fig.get_size_inches()[0] - 2.0
    low, high = _range([(array, masked)])
    low, high = low if vmin is None else vmin, high if vmax is None else vmax
    image = _draw(ax, array, masked, q_labels, k_labels, low, high, axis_inches=axis_inches)
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


@_column_style
def head_grid(
    attentions,
    layer: int,
    tokens: Sequence[str] | None = None,
    *,
    batch: int = 0,
    mask=None,
    ncols: int = 2,
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
        mask: optional boolean ``(q_len, k_len)`` for every head (True = may attend), or one per
            head, ``(heads, q_len, k_len)``; forbidden cells are drawn grey. Without it nothing is.
        ncols: heads per row (at most 2 fit the book's column with readable labels).
    """
    per_head = _check_attentions(attentions, layer, batch)  # (heads, q_len, k_len)
    heads = per_head.shape[0]
    head_masks = [None] * heads
    if mask is not None:
        mask = torch.as_tensor(mask)
        head_masks = list(mask) if mask.dim() == 3 else [mask] * heads
        if len(head_masks) != heads:
            raise ValueError(f"got {len(head_masks)} masks for {heads} heads; give one mask, or one per head.")
    prepared = [_prepare(per_head[h], tokens, head_masks[h], max_tokens, f"head {h}") for h in range(heads)]
    q_len, k_len = prepared[0][0].shape
    ncols = max(1, min(ncols, heads))
    nrows = -(-heads // ncols)
    cell = min(0.16 * max(q_len, k_len) + 1.2, (COLUMN - 1.4) / ncols)
    fig = _new_figure(figsize=(cell * ncols + 1.4, cell * nrows + 0.9))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    low, high = _range([(a, m) for a, m, _, _ in prepared])
    image = None
    for h, (array, masked, q_labels, k_labels) in enumerate(prepared):
        ax = axes[h // ncols][h % ncols]
        image = _draw(
            ax, array, masked, q_labels, k_labels, low, high, title=f"head {h}", labels=False, axis_inches=cell - 0.6
        )
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


@_column_style
def compare(
    before,
    after,
    tokens: Sequence[str] | None = None,
    *,
    titles: Sequence[str] = ("before", "after"),
    diff: bool = True,
    row_titles: Sequence[str] | None = None,
    masks=None,
    suptitle: str | None = None,
    max_tokens: int | None = MAX_TOKENS,
):
    """Put attention maps before and after a change side by side on one colour scale; return the Figure.

    With ``diff=True`` a last column shows ``after - before`` on a diverging scale centred on 0
    (red: more weight after, blue: less), drawn under the pair it belongs to. Cells masked in
    both maps are grey everywhere.

    Args:
        before, after: ``(q_len, k_len)`` weights of the same shape, or two lists of such maps, one
            row per pair (e.g. RoPE and NoRoPE rows of a causal/bidirectional comparison: a 2x2 grid).
        tokens: one label per key position, or ``None`` for indices.
        titles: the two column titles.
        row_titles: one label per row, when lists are given.
        masks: what may attend (True) in each map, drawn grey where False: one boolean
            ``(q_len, k_len)`` mask for every map, a pair ``(before_mask, after_mask)`` (``None``
            for a map with nothing masked), or one such pair per row when lists are given.
            Without it nothing is drawn as masked.
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
    if masks is None or (isinstance(masks, (torch.Tensor, np.ndarray)) and np.ndim(masks) == 2):
        row_masks = [(masks, masks)] * len(befores)
    elif rows_given:
        row_masks = [tuple(pair) for pair in masks]
    else:
        row_masks = [tuple(masks)]
    if len(row_masks) != len(befores) or any(len(pair) != 2 for pair in row_masks):
        raise ValueError(
            "masks must be one (q_len, k_len) mask, a (before, after) pair, or one such pair per row; "
            f"got {len(row_masks)} entries for {len(befores)} rows."
        )
    pairs = []
    for a_map, b_map, (mask_a, mask_b) in zip(befores, afters, row_masks, strict=True):
        a, masked_a, q_labels, k_labels = _prepare(a_map, tokens, mask_a, max_tokens, "before")
        b, masked_b, _, _ = _prepare(b_map, tokens, mask_b, max_tokens, "after")
        if a.shape != b.shape:
            raise ValueError(f"before has shape {a.shape} and after {b.shape}: compare needs maps of the same shape.")
        pairs.append((a, masked_a, b, masked_b))
    q_len, k_len = pairs[0][0].shape
    # two maps per row; the difference goes on a row of its own, under its pair
    rows_per_pair = 2 if diff else 1
    cell = min(0.16 * max(q_len, k_len) + 1.3, (COLUMN - 1.6) / 2)
    fig = _new_figure(figsize=(2 * cell + 1.6, (cell + 0.55) * rows_per_pair * len(pairs) + 0.4))
    # room between rows: a title must not sit against the axis label of the maps above it
    fig.get_layout_engine().set(h_pad=0.1)
    # a fifth, narrow column holds each row's colour bar: a bar given several axes in rows that
    # are not next to each other would span, and cover, the rows between them
    grid = fig.add_gridspec(rows_per_pair * len(pairs), 5, width_ratios=(1, 1, 1, 1, 0.12))
    low, high = _range([(a, ma) for a, ma, _, _ in pairs] + [(b, mb) for _, _, b, mb in pairs])
    deltas = [(b - a, ma & mb) for a, ma, b, mb in pairs]
    span = max((float(np.abs(d[~m]).max()) for d, m in deltas if (~m).any()), default=1.0) or 1.0
    weight_axes, diff_axes = [], []
    image = diff_image = None
    for row, ((a, masked_a, b, masked_b), (delta, both)) in enumerate(zip(pairs, deltas, strict=True)):
        label = f"{row_titles[row]}: " if row_titles else ""
        top = rows_per_pair * row
        left, right = fig.add_subplot(grid[top, 0:2]), fig.add_subplot(grid[top, 2:4])
        weight_axes += [left, right]
        image = _draw(left, a, masked_a, q_labels, k_labels, low, high, title=label + titles[0], axis_inches=cell - 0.6)
        _draw(right, b, masked_b, q_labels, k_labels, low, high, title=label + titles[1], axis_inches=cell - 0.6)
        right.set_ylabel("")
        if masked_a.any() or masked_b.any():
            _masked_legend(left)
        if diff:
            ax = fig.add_subplot(grid[top + 1, 1:3])
            diff_axes.append(ax)
            diff_image = _draw(
                ax,
                delta,
                both,
                q_labels,
                k_labels,
                -span,
                span,
                cmap="RdBu_r",
                title=label + "after - before",
                axis_inches=cell - 0.6,
            )
        fig.colorbar(image, cax=fig.add_subplot(grid[top, 4]), label="attention weight")
        if diff:
            fig.colorbar(diff_image, cax=fig.add_subplot(grid[top + 1, 4]), label="change in weight")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


@_column_style
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
    """Draw several ``(q_len, k_len)`` maps, two per row, e.g. one head at several stages; return the Figure.

    Args:
        maps: the 2D maps (weights or scores).
        titles: one title per map.
        tokens: labels for every map (a list of strings), one list per map (a list of lists),
            or ``None`` for indices.
        masks: one boolean mask per map (True = may attend) or ``None`` entries; forbidden cells
            are drawn grey. Without a mask every cell of that map is drawn as a value.
        share_scale: one colour range for all maps (compare values) or one each (compare patterns).
            A map whose every cell has the same value gets no colour bar (it would suggest a
            variation that is not there); its title gives the value instead.
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
    ncols = min(2, len(maps))
    nrows = -(-len(maps) // ncols)
    cell = min(0.16 * max(q_len, k_len) + 1.5, (COLUMN - 0.4) / ncols - (0 if share_scale else 0.8))
    width = (cell + (0 if share_scale else 0.8)) * ncols + (1.0 if share_scale else 0.4)
    fig = _new_figure(figsize=(width, (cell + 0.5) * nrows + 0.3))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.flat)[: len(maps)]
    for ax in list(grid.flat)[len(maps) :]:
        ax.set_visible(False)
    shared = _range([(a, m) for a, m, _, _ in prepared]) if share_scale else None
    for ax, (array, masked, q_labels, k_labels), title in zip(axes, prepared, titles, strict=True):
        low, high = shared or _range([(array, masked)])
        visible = array[~masked]
        constant = not share_scale and visible.size and float(visible.max() - visible.min()) == 0.0
        if constant:
            title = f"{title}\n(every cell {float(visible.max()):.3g})"
        image = _draw(ax, array, masked, q_labels, k_labels, low, high, title=title, axis_inches=cell - 0.6)
        if not share_scale and not constant:
            fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.85)
        if masked.any():
            _masked_legend(ax)
    if share_scale:
        fig.colorbar(image, ax=list(axes), label=colorbar_label, shrink=0.85)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# curves(): line patterns and marker shapes, one per series, so no two differ by colour alone
_LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (10, 3))]
_MARKERS = ["o", "s", "^", "D", "v", "P"]


@_column_style
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
    bands: dict | None = None,
    legend_below: bool = False,
):
    """Plot one or more curves over the same ``x`` with labelled axes and a legend; return the Figure.

    A logarithmic x axis is in powers of two (token counts), with no labels on its minor ticks.

    ``bands`` maps a label to an ``(x_from, x_to)`` range shaded behind the curves (chapter 4 marks
    where the RoPE bound drops steeply). ``legend_below`` puts the legend under the axes, in two
    columns, where it cannot hide a curve.
    """
    if not series:
        raise ValueError("curves needs at least one series, e.g. {'label': values}.")
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    fig = _new_figure(figsize=(COLUMN, 3.6))
    ax = fig.add_subplot()
    for label, (start, stop) in (bands or {}).items():
        ax.axvspan(start, stop, color="#fdb863", alpha=0.35, label=label, linewidth=0)
    for index, (label, values) in enumerate(series.items()):
        y = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"series {label!r} has {y.shape[0] if y.ndim else 0} values for {x.shape[0]} x values.")
        # not by colour alone: each curve also gets its own dash pattern and, with markers, its own
        # hollow marker shape, so curves that coincide stay visible one through the other
        style = {"linestyle": _LINESTYLES[index % len(_LINESTYLES)]}
        if marker is not None:
            shape = marker if index == 0 else _MARKERS[index % len(_MARKERS)]
            style.update(marker=shape, fillstyle="none" if index else "full", markersize=6 + 1.5 * (index % 3))
        ax.plot(x, y, label=label, **style)
    if logx:
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small", frameon=False)
    elif len(series) > 1 or next(iter(series)) or bands:
        ax.legend()
    return fig


@_column_style
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


COMPAT_COLORS = {"both ways": "#1b9e77", "causal": "#d95f02", "refused": "#bdbdbd", "error": "#252525"}


def compat_matrix(rows: Sequence[dict], title: str | None = None):
    """Draw chapter 6's compatibility table (``book/data/compat.json``) as a grid; return the Figure.

    One row per transformers release, one column per patch x backend x ``use_cache``; each cell
    says what the probes found: "both ways" (bidirectional), "causal", "refused" (the patch
    declined with an error of its own) or "error" (it crashed).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from packaging.version import Version

    if not rows:
        raise ValueError("compat_matrix needs rows, as in book/data/compat.json.")
    releases = sorted({r["transformers"] for r in rows}, key=Version)
    columns = list(dict.fromkeys((r["patch"], r["backend"], r["use_cache"]) for r in rows))
    by = {(r["transformers"], r["patch"], r["backend"], r["use_cache"]): r for r in rows}
    kinds = list(COMPAT_COLORS)

    def kind(row) -> str:
        if row["refused"]:
            return "refused"
        if row["error"]:
            return "error"
        return "both ways" if row["attends_to_future"] else "causal"

    grid = np.array([[kinds.index(kind(by[(v, *c)])) for c in columns] for v in releases])
    fig = _new_figure(figsize=(6.9, 0.42 * len(releases) + 1.9))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=ListedColormap(list(COMPAT_COLORS.values())), vmin=0, vmax=len(kinds) - 1, aspect="auto")
    for y, x in np.ndindex(grid.shape):
        label = {"both ways": "both", "causal": "causal", "refused": "—", "error": "error"}[kinds[grid[y, x]]]
        color = "white" if kinds[grid[y, x]] in ("both ways", "causal", "error") else "black"
        ax.text(x, y, label, ha="center", va="center", fontsize=8, color=color)
    ax.set_yticks(range(len(releases)), releases)
    ax.set_xticks(range(len(columns)), [f"{b}\n{'cache' if c else 'no cache'}" for _, b, c in columns], fontsize=8)
    patches = list(dict.fromkeys(p for p, _, _ in columns))
    for index, patch in enumerate(patches):
        span = [i for i, (p, _, _) in enumerate(columns) if p == patch]
        ax.text((span[0] + span[-1]) / 2, -0.75, patch, ha="center", va="bottom", fontsize=9, fontweight="bold")
        if index:
            ax.axvline(span[0] - 0.5, color="white", linewidth=3)
    ax.set_ylabel("transformers")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(
        handles=[Patch(facecolor=color, label=name) for name, color in COMPAT_COLORS.items()],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=len(COMPAT_COLORS),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title or "Does the patched model attend both ways? (the probes' verdict)", pad=22)
    return fig


# -- long inputs: pooled maps and attention by distance (chapter 14) --------------------------
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
