"""Schematic figures: the pictures a chapter opens with, drawn in code so they stay exact.

Each function returns a matplotlib ``Figure`` sized for the book's ~690 px column (6.9 inches at
100 dpi) with text of at least 10 points, and shows nothing itself. The sizes written into the
pictures come from the arguments (a config, a number of heads), never from a typed-in drawing.

- ``attention_in_one_picture``: queries, keys, values and one weight matrix (the on-ramp page);
- ``shape_flow``: the tensor shapes through ``LlamaAttention.forward`` (chapter 1);
- ``eager_steps``: the six steps of ``eager_attention_forward`` (chapter 2);
- ``kv_groups``: query heads sharing key/value heads (chapter 3);
- ``rotating_pair`` and ``pairing_layouts``: one RoPE pair turning with position, and the two ways
  of pairing features (chapter 4);
- ``rope_barcode``: cos(m * theta_i) over positions and pairs (chapter 4);
- ``is_causal_paths``: where ``is_causal=False`` is read or dropped, by transformers release
  (chapter 6);
- ``set_pipeline``: the STATE pattern, cells to prediction (chapter 8).
"""

import math

import numpy as np

WIDTH = 6.9  # inches: the book column at 100 dpi
FONT = 10  # points; >= 9 px on the page at the column's scale

# one colour per role, used in every diagram
COLORS = {
    "input": "#e8eef7",
    "query": "#f6c8a8",
    "key": "#a8d0f0",
    "value": "#b8e0b0",
    "weights": "#f3e79b",
    "output": "#e0d4f0",
    "neutral": "#f2f2f2",
    "drop": "#d62728",
    "keep": "#2ca02c",
}


def _figure(height: float):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(WIDTH, height), dpi=100)
    plt.close(fig)  # shown once, when a cell returns it
    return fig


def _canvas(fig, xlim=(0, 100), ylim=(0, 100)):
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return ax


def _box(ax, x, y, w, h, text, color="neutral", size=FONT, weight="normal", edge="#555555"):
    """A rounded box centred on (x, y)."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.4,rounding_size=1.2",
            facecolor=COLORS.get(color, color),
            edgecolor=edge,
            linewidth=1.0,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight, linespacing=1.3)


def _arrow(ax, start, end, color="#444444", style="-|>", text=None, size=FONT - 1, width=1.2):
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops={"arrowstyle": style, "color": color, "lw": width, "shrinkA": 2, "shrinkB": 2},
    )
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 2.5, text, ha="center", fontsize=size)


def attention_in_one_picture(tokens=("the", "cat", "sat", "on", "it"), seed: int = 0):
    """Attention for a reader who has never seen it: each token asks (query), each token offers
    (key, value); a query's weights over the keys sum to 1; the causal mask hides the future.

    Left: the weights of one query. Right: all queries' weights, future cells masked (causal).
    """
    rng = np.random.default_rng(seed)
    n = len(tokens)
    scores = rng.normal(size=(n, n)) * 1.5
    causal = np.tril(np.ones((n, n), dtype=bool))
    scores = np.where(causal, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)

    fig = _figure(3.4)
    left = fig.add_axes((0.02, 0.08, 0.5, 0.84))
    left.set_xlim(0, 100)
    left.set_ylim(0, 100)
    left.axis("off")
    query = n - 1
    left.text(50, 96, f"query: {tokens[query]!r} asks every key", ha="center", fontsize=FONT, weight="bold")
    for i, token in enumerate(tokens):
        y = 82 - i * 16
        _box(left, 14, y, 14, 8, token, "key")
        _box(left, 86, y, 14, 8, f"value\n{token}", "value", size=FONT - 1)
        w = weights[query, i]
        left.annotate(
            "",
            xy=(76, y),
            xytext=(24, y),
            arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 0.6 + 6 * w, "alpha": 0.35 + 0.65 * w},
        )
        left.text(50, y + 2.2, f"weight {w:.2f}", ha="center", fontsize=FONT - 1)
    left.text(50, 2, "output = weighted sum of the values (weights sum to 1)", ha="center", fontsize=FONT - 1)

    right = fig.add_axes((0.62, 0.2, 0.33, 0.6))
    shown = np.ma.masked_array(weights, mask=~causal)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    right.imshow(shown, cmap=cmap, vmin=0, vmax=1)
    right.set_xticks(range(n), tokens, rotation=90, fontsize=FONT - 1)
    right.set_yticks(range(n), tokens, fontsize=FONT - 1)
    right.set_xlabel("key", fontsize=FONT)
    right.set_ylabel("query", fontsize=FONT)
    right.set_title("all queries: causal mask\n(grey = the future, hidden)", fontsize=FONT)
    return fig


def shape_flow(config, seq_len: int = 6, batch: int = 1):
    """The tensor shapes through ``LlamaAttention.forward`` for ``config``, with its real sizes."""
    from attnviz.families import head_dim as _head_dim

    hidden = config.hidden_size
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads
    d = _head_dim(config)
    B, S = batch, seq_len  # noqa: N806 - the names the shapes use

    fig = _figure(4.4)
    ax = _canvas(fig)
    ax.text(50, 96, "Shapes through LlamaAttention.forward", ha="center", fontsize=FONT + 1, weight="bold")
    ax.text(
        50,
        90,
        f"B = {B} sequence, S = {S} tokens, hidden {hidden}, {heads} query heads, {kv_heads} key/value heads, "
        f"head_dim {d}",
        ha="center",
        fontsize=FONT - 1,
    )
    # top: projections, split into heads, RoPE, repeat_kv (left to right)
    _box(ax, 9, 64, 15, 10, f"hidden_states\n({B}, {S}, {hidden})", "input")
    rows = ((78, "q_proj", heads, "query"), (64, "k_proj", kv_heads, "key"), (50, "v_proj", kv_heads, "value"))
    for y, name, out_heads, color in rows:
        _box(ax, 28, y, 10, 7, name, color)
        _arrow(ax, (16.5, 64), (22.5, y))
        _box(ax, 49, y, 19, 7, f"({B}, {out_heads}, {S}, {d})", color, size=FONT - 1)
        _arrow(ax, (33.5, y), (39, y))
    _box(ax, 73, 71, 13, 17, "RoPE\nrotates\nq and k", "neutral")
    _arrow(ax, (58.5, 78), (66, 76))
    _arrow(ax, (58.5, 64), (66, 66))
    _box(ax, 91, 57, 14, 17, f"repeat_kv\nk, v:\n{kv_heads} → {heads} heads", "neutral", size=FONT - 1)
    _arrow(ax, (79.5, 66), (84, 62))
    _arrow(ax, (58.5, 50), (84, 52))
    # bottom: scores, mask and softmax, weighted sum, merge (right to left)
    y = 20
    _box(ax, 86, y, 24, 11, f"scores q·kᵀ / √{d}\n({B}, {heads}, {S}, {S})", "weights", size=FONT - 1)
    _arrow(ax, (91, 48.5), (91, y + 6))
    _box(ax, 63, y, 14, 11, "+ mask,\nsoftmax", "weights")
    _arrow(ax, (74, y), (70, y))
    _box(ax, 42, y, 19, 11, f"weights @ v\n({B}, {heads}, {S}, {d})", "value", size=FONT - 1)
    _arrow(ax, (56, y), (51.5, y))
    _box(
        ax,
        13,
        y,
        24,
        11,
        f"merge heads, o_proj\n({B}, {S}, {heads * d}) → ({B}, {S}, {hidden})",
        "output",
        size=FONT - 1,
    )
    _arrow(ax, (32.5, y), (25, y))
    ax.text(
        50,
        36,
        f"view + transpose split the features into heads; each key/value head serves {heads // kv_heads} query heads",
        ha="center",
        fontsize=FONT - 1,
        style="italic",
    )
    return fig


# The steps of transformers' eager_attention_forward, in order: (label, a fragment of the line of
# source that does it). tests/test_diagrams.py checks every fragment against the installed source.
EAGER_STEPS = (
    ("repeat_kv\nkeys, values", "repeat_kv(key, module.num_key_value_groups)"),
    ("scores\nq·kᵀ × scaling", "torch.matmul(query, key_states.transpose(2, 3)) * scaling"),
    ("+ mask\n(finfo.min\non the future)", "attn_weights + attention_mask"),
    ("softmax\nin float32", "softmax(attn_weights, dim=-1, dtype=torch.float32)"),
    ("dropout\n(training\nonly)", "dropout(attn_weights, p=dropout, training=module.training)"),
    ("weights @ v,\ntranspose", "torch.matmul(attn_weights, value_states)"),
)


def eager_steps(num_attention_heads: int = 4, num_key_value_heads: int = 2, seq_len: int = 8, head_dim: int = 32):
    """The six steps of ``eager_attention_forward``, with the shape each one leaves (batch 1)."""
    H, KV, S, D = num_attention_heads, num_key_value_heads, seq_len, head_dim  # noqa: N806
    shapes = (
        f"k, v: (1, {KV}, {S}, {D})\n→ (1, {H}, {S}, {D})",
        f"(1, {H}, {S}, {S})",
        f"(1, {H}, {S}, {S})",
        f"(1, {H}, {S}, {S})\nrows sum to 1",
        f"(1, {H}, {S}, {S})",
        f"(1, {S}, {H}, {D})",
    )
    fig = _figure(2.6)
    ax = _canvas(fig)
    ax.text(
        50,
        92,
        f"eager_attention_forward, step by step: q (1, {H}, {S}, {D}), k and v (1, {KV}, {S}, {D})",
        ha="center",
        fontsize=FONT + 1,
        weight="bold",
    )
    colors = ("key", "weights", "weights", "weights", "weights", "value")
    step = 100 / len(EAGER_STEPS)
    for index, ((label, _), shape, color) in enumerate(zip(EAGER_STEPS, shapes, colors, strict=True)):
        x = step * (index + 0.5)
        _box(ax, x, 56, step * 0.84, 34, label, color, size=FONT - 1)
        ax.text(x, 22, shape, ha="center", va="top", fontsize=FONT - 1)
        if index:
            _arrow(ax, (x - step * 0.6, 56), (x - step * 0.4, 56))
    return fig


def kv_groups(num_attention_heads: int, num_key_value_heads: int):
    """Which key/value head each query head reads: grouped-query attention (``repeat_kv``)."""
    if num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"num_attention_heads ({num_attention_heads}) must be a multiple of num_key_value_heads "
            f"({num_key_value_heads})."
        )
    import matplotlib

    group = num_attention_heads // num_key_value_heads
    palette = matplotlib.colormaps["tab10"]
    fig = _figure(2.6)
    ax = _canvas(fig)
    ax.text(
        50,
        93,
        f"{num_attention_heads} query heads share {num_key_value_heads} key/value heads: groups of {group}",
        ha="center",
        fontsize=FONT + 1,
        weight="bold",
    )
    q_step = 92 / num_attention_heads
    kv_step = 92 / num_key_value_heads
    for kv in range(num_key_value_heads):
        color = palette(kv % 10)
        x_kv = 4 + kv_step * (kv + 0.5)
        _box(ax, x_kv, 20, min(kv_step * 0.7, 22), 10, f"k, v head {kv}", color, size=FONT - 1)
        for q in range(kv * group, (kv + 1) * group):
            x_q = 4 + q_step * (q + 0.5)
            _box(ax, x_q, 70, min(q_step * 0.7, 12), 10, f"q {q}", color, size=FONT - 1)
            _arrow(ax, (x_q, 64), (x_kv, 26), color="#666666", width=0.9)
    ax.text(
        50,
        4,
        f"repeat_kv copies each key/value head {group} times, once per query head of its group",
        ha="center",
        fontsize=FONT - 1,
    )
    return fig


def rotating_pair(theta: float = math.pi / 8, positions=range(6)):
    """One RoPE pair: the same query vector rotated by m·θ at positions m (angles drawn to scale)."""
    import matplotlib.pyplot as plt  # noqa: F401 - registers the projections matplotlib needs

    positions = list(positions)
    fig = _figure(3.6)
    ax = fig.add_axes((0.25, 0.06, 0.5, 0.86))
    ax.set_aspect("equal")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-0.35, 1.35)
    ax.axhline(0, color="#bbbbbb", lw=0.8)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    import matplotlib

    palette = matplotlib.colormaps["viridis"]
    base = math.radians(10)
    for index, m in enumerate(positions):
        angle = base + m * theta
        color = palette(index / max(1, len(positions) - 1))
        ax.annotate(
            "", xy=(math.cos(angle), math.sin(angle)), xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": color}
        )
        ax.text(1.15 * math.cos(angle), 1.15 * math.sin(angle), f"m={m}", ha="center", va="center", fontsize=FONT)
    ax.set_xlabel("feature 2i", fontsize=FONT)
    ax.set_ylabel("feature 2i+1", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.set_title(f"One pair of a query at positions m: turned by m·θ (θ = {theta:.3f} rad)", fontsize=FONT)
    return fig


def pairing_layouts(head_dim: int = 8):
    """Which features RoPE rotates together: interleaved (the paper, GPT-J) against half-split
    (GPT-NeoX, transformers' ``rotate_half``). Same pairs of frequencies, different feature order."""
    if head_dim % 2 or head_dim < 2:
        raise ValueError(f"head_dim must be a positive even number; got {head_dim}.")
    import matplotlib

    half = head_dim // 2
    palette = matplotlib.colormaps["tab10"]
    fig = _figure(2.8)
    ax = _canvas(fig)
    step = 80 / head_dim
    layouts = (
        (70, "interleaved (RoFormer paper, GPT-J)", lambda f: f // 2),
        (22, "half-split (GPT-NeoX, transformers' rotate_half)", lambda f: f % half),
    )
    for y, title, pair_of in layouts:
        ax.text(50, y + 15, title, ha="center", fontsize=FONT, weight="bold")
        for feature in range(head_dim):
            pair = pair_of(feature)
            x = 12 + step * (feature + 0.5)
            _box(ax, x, y, step * 0.7, 9, str(feature), palette(pair % 10), size=FONT - 1)
        ax.text(4, y, "feature", ha="center", va="center", fontsize=FONT - 1)
    ax.text(
        50,
        3,
        "same colour = one pair, rotated by the same angle (pair i turns at frequency θ_i)",
        ha="center",
        fontsize=FONT - 1,
    )
    return fig


def rope_barcode(head_dim: int = 64, positions: int = 64, theta: float = 10000.0):
    """cos(m·θ_i) for positions m and pairs i: fast pairs (left) stripe quickly, slow pairs barely move."""
    pairs = head_dim // 2
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2) / head_dim))  # (pairs,)
    table = np.cos(np.arange(positions)[:, None] * inv_freq[None, :])  # (positions, pairs)
    fig = _figure(3.6)
    ax = fig.add_axes((0.1, 0.14, 0.72, 0.74))
    image = ax.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xlabel(f"pair i (0 = fastest, {pairs - 1} = slowest)", fontsize=FONT)
    ax.set_ylabel("position m", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.set_title(f"cos(m·θ_i), head_dim {head_dim}, θ base {theta:g}", fontsize=FONT)
    bar = fig.colorbar(image, cax=fig.add_axes((0.85, 0.14, 0.03, 0.74)))
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig


# Where STATE's first patch meets transformers, release by release: (release range, steps). A step
# is (text, kept) where kept is True (the is_causal=False intent survives) or False (dropped).
IS_CAUSAL_PATHS = (
    (
        "4.52 and earlier",
        (
            ("_update_causal_mask: overridden, returns None", True),
            ("eager: no mask added", True),
            ("sdpa: no mask, is_causal=False kwarg", True),
        ),
    ),
    (
        "4.53 to 5.1",
        (
            ("_update_causal_mask: gone, override never called", False),
            ("create_causal_mask ignores the kwarg: eager gets a causal mask", False),
            ("sdpa: is_causal=False read when no mask is built", True),
        ),
    ),
    (
        "5.2 and later",
        (
            ("merge_with_config_defaults reads is_causal=False", True),
            ("create_causal_mask -> create_bidirectional_mask", True),
            ("eager, sdpa, flex, flash: all bidirectional", True),
        ),
    ),
)


def is_causal_paths(paths=IS_CAUSAL_PATHS):
    """The path of ``is_causal=False`` through ``LlamaModel`` on three ranges of releases: green where
    the intent is kept, red where it is dropped."""
    fig = _figure(3.8)
    ax = _canvas(fig)
    ax.text(
        50,
        95,
        "forward(..., is_causal=False): where it is read and where it is dropped",
        ha="center",
        fontsize=FONT + 1,
        weight="bold",
    )
    width = 100 / len(paths)
    for column, (release, steps) in enumerate(paths):
        x = width * (column + 0.5)
        _box(ax, x, 82, width * 0.8, 7, release, "neutral", weight="bold")
        for row, (text, kept) in enumerate(steps):
            y = 62 - row * 22
            color = "#dff0da" if kept else "#f8d7d7"
            edge = COLORS["keep"] if kept else COLORS["drop"]
            _box(ax, x, y, width * 0.8, 13, _wrap(text, 26), color, size=FONT - 1, edge=edge)
            if row:
                _arrow(ax, (x, y + 22 - 7), (x, y + 7))
    return fig


def set_pipeline():
    """The STATE pattern: a set of cells in, one prediction per cell out, no order anywhere."""
    fig = _figure(2.4)
    ax = _canvas(fig)
    steps = (
        ("cells\n(set of\nexpression\nprofiles)", "input"),
        ("encoder\n+ perturbation\nembedding", "query"),
        ("inputs_embeds\n(batch, cells,\nhidden)", "neutral"),
        ("Llama backbone\nbidirectional\n+ NoRoPE", "key"),
        ("decoder\n→ predicted\ncells", "output"),
    )
    step = 100 / len(steps)
    for index, (text, color) in enumerate(steps):
        x = step * (index + 0.5)
        _box(ax, x, 50, step * 0.78, 62, text, color, size=FONT - 1)
        if index:
            _arrow(ax, (x - step * 0.61, 50), (x - step * 0.39, 50))
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
