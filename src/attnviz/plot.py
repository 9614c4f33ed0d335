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


# Colours of the recipe matrix (chapter 11): what a cell of book/data/recipes.json says.
VERDICT_COLORS = {
    "bidirectional": "#1a9850",  # attends to the future, padding masked
    "padding leaks": "#fdae61",  # attends to the future, but the padding is attended to as well
    "causal": "#d73027",  # does not attend to the future
    "error": "#404040",  # the recipe's own code raised
    "not run": "#f2f2f2",  # outside the recipe's range, or no such backend in that release
}


def recipe_matrix(rows: Sequence[dict], recipes: Sequence[str] | None = None, title: str | None = None):
    """Draw the recipe matrix as a green/red grid (chapter 11); return the Figure.

    One band per recipe (top: batch 1; bottom: batch 2 with padding), one block per transformers
    release; inside a block, one column per backend (eager, sdpa, flex) and ``use_cache``
    (off, on). A recipe without a cache (an encoder) fills both halves.

    Args:
        rows: rows of ``book/data/recipes.json``.
        recipes: the recipes to draw, top to bottom (default: in the order they first appear).
    """
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch
    from packaging.version import Version

    from attnviz.recipes import verdict

    if not rows:
        raise ValueError("recipe_matrix needs rows: load book/data/recipes.json (scripts/recipe_matrix.py writes it).")
    recipes = list(dict.fromkeys(r["recipe"] for r in rows)) if recipes is None else list(recipes)
    releases = sorted({r["transformers"] for r in rows}, key=Version)
    backends = ("eager", "sdpa", "flex_attention")
    image = np.ones((2 * len(recipes), 6 * len(releases), 3)) * np.array(to_rgb(VERDICT_COLORS["not run"]))
    for row in rows:
        if row["recipe"] not in recipes:
            continue
        y = 2 * recipes.index(row["recipe"]) + (row["batch"] - 1)
        x0 = 6 * releases.index(row["transformers"]) + 2 * backends.index(row["backend"])
        caches = (0, 1) if row["use_cache"] is None else (int(row["use_cache"]),)
        for cache in caches:
            image[y, x0 + cache] = to_rgb(VERDICT_COLORS[verdict(row)])

    fig = _new_figure(figsize=(6.9, 0.32 * len(recipes) + 1.9))
    ax = fig.subplots()
    ax.imshow(image, aspect="auto", interpolation="nearest")
    for x in range(6, 6 * len(releases), 6):
        ax.axvline(x - 0.5, color="white", linewidth=2.5)
    for x in range(2, 6 * len(releases), 2):
        ax.axvline(x - 0.5, color="white", linewidth=0.4)
    for y in range(2, 2 * len(recipes), 2):
        ax.axhline(y - 0.5, color="white", linewidth=2.5)
    ax.set_xticks([6 * i + 2.5 for i in range(len(releases))], releases, rotation=60, ha="right", fontsize=7.5)
    ax.set_yticks([2 * i + 0.5 for i in range(len(recipes))], recipes, fontsize=7.5)
    ax.tick_params(length=0)
    ax.set_xlabel("transformers release; in each block: eager | sdpa | flex, each cache off | on", fontsize=7.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = [Patch(facecolor=c, edgecolor="#999999", label=name) for name, c in VERDICT_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=7.5, frameon=False)
    ax.set_title(
        title or "Does the recipe attend to the future? (each band: batch 1 on top, batch 2 padded below)", fontsize=8.5
    )
    return fig
