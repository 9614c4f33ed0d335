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
    from matplotlib.patches import Patch

    array = _as_2d_array(weights)
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
            raise ValueError(f"mask has shape {masked.shape} but weights have shape {array.shape}.")

    if ax is None:
        ax = _new_figure(figsize=(1.6 + 0.32 * k_len, 1.0 + 0.3 * q_len)).add_subplot()
    fig = ax.figure

    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MASKED_COLOR)
    shown = np.ma.masked_array(array, mask=masked)
    visible = array[~masked]
    if vmin is None:
        vmin = float(min(visible.min(), 0.0)) if visible.size else 0.0
    if vmax is None:
        vmax = float(visible.max()) if visible.size else 1.0
    image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.9)

    ax.set_xticks(range(k_len), k_labels, rotation=90)
    ax.set_yticks(range(q_len), q_labels)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position (attending)")
    if title:
        ax.set_title(title)
    if masked.any():
        ax.legend(
            handles=[Patch(facecolor=MASKED_COLOR, edgecolor="black", label="masked")],
            loc="upper right",
            bbox_to_anchor=(1.0, 1.0),
            fontsize="small",
        )
    return fig
