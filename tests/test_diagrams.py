"""The schematic figures: sized for the column, readable, and drawn from the numbers they show."""

import itertools
import json
import math

import numpy as np
import pytest
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text

import attnviz
from attnviz import diagrams

ALL = {
    "attention_in_one_picture": lambda: diagrams.attention_in_one_picture(),
    "shape_flow": lambda: diagrams.shape_flow(attnviz.tiny_config()),
    "eager_steps": lambda: diagrams.eager_steps(),
    "kv_groups": lambda: diagrams.kv_groups(8, 2),
    "rotating_pair": lambda: diagrams.rotating_pair(),
    "pairing_layouts": lambda: diagrams.pairing_layouts(8),
    "rope_barcode": lambda: diagrams.rope_barcode(),
    "is_causal_paths": lambda: diagrams.is_causal_paths(),
    "set_pipeline": lambda: diagrams.set_pipeline(),
}


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _strings(fig) -> list[str]:
    return [t.get_text() for t in _texts(fig)]


@pytest.mark.parametrize("name", list(ALL))
def test_sized_for_the_column_with_readable_text(name):
    fig = ALL[name]()
    width, height = fig.get_size_inches() * fig.dpi
    assert width == 690 and 200 <= height <= 500
    sizes = [t.get_fontsize() for t in _texts(fig)]
    assert sizes and min(sizes) >= 9, f"{name}: text of {min(sizes)} pt"


@pytest.mark.parametrize("name", list(ALL))
def test_no_two_labels_overlap(name):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ALL[name]()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    # tick labels are placed by matplotlib itself (and exist off-axis, undrawn): leave them out
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels(which="both")}
    labels = [t for t in _texts(fig) if id(t) not in ticks]
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.98, 0.9)) for t in labels]
    clashes = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    assert not clashes, f"{name}: overlapping labels {clashes[:3]}"
    inside = fig.bbox
    outside = [text for text, box in boxes if not (inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1)]
    assert not outside, f"{name}: labels cut off at the sides: {outside}"


def test_shape_flow_shows_the_configs_own_sizes():
    small = _strings(diagrams.shape_flow(attnviz.tiny_config(), seq_len=6))
    assert "(1, 4, 6, 32)" in small and "(1, 2, 6, 32)" in small
    config = attnviz.tiny_config(num_attention_heads=8, num_key_value_heads=2, hidden_size=256, head_dim=64)
    big = "\n".join(_strings(diagrams.shape_flow(config, seq_len=10, batch=2)))
    assert "(2, 8, 10, 64)" in big and "(2, 10, 512) → (2, 10, 256)" in big and "(2, 8, 10, 10)" in big


def test_eager_steps_follow_the_installed_source_in_order():
    import inspect

    from transformers.models.llama.modeling_llama import eager_attention_forward

    source = inspect.getsource(eager_attention_forward)
    where = [source.find(fragment) for _, fragment in diagrams.EAGER_STEPS]
    assert -1 not in where, [f for (_, f), at in zip(diagrams.EAGER_STEPS, where, strict=True) if at < 0]
    assert where == sorted(where), "the picture's steps are out of the source's order"
    text = _strings(diagrams.eager_steps(num_attention_heads=8, num_key_value_heads=2, seq_len=5, head_dim=64))
    assert "(1, 8, 5, 5)" in text and "(1, 5, 8, 64)" in text
    assert [label for label, _ in diagrams.EAGER_STEPS] == [t for t in text if t in dict(diagrams.EAGER_STEPS)]


def test_kv_groups_draws_every_head_in_its_group():
    fig = diagrams.kv_groups(6, 3)
    labels = _strings(fig)
    assert sum(label.startswith("q ") for label in labels) == 6
    assert sum(label.startswith("k, v head") for label in labels) == 3
    colours = {}
    for patch in fig.findobj(FancyBboxPatch):
        colours.setdefault(tuple(patch.get_facecolor()), 0)
        colours[tuple(patch.get_facecolor())] += 1
    assert sorted(colours.values()) == [3, 3, 3]  # each group: 2 query heads + its key/value head
    with pytest.raises(ValueError, match="multiple"):
        diagrams.kv_groups(6, 4)


def test_rotating_pair_turns_by_m_theta():
    theta = 0.3
    fig = diagrams.rotating_pair(theta=theta, positions=range(4))
    arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None]
    angles = [math.atan2(a.xy[1], a.xy[0]) for a in arrows]
    assert np.allclose(np.diff(angles), theta)


def test_pairing_layouts_colour_the_pairs_each_convention_rotates():
    fig = diagrams.pairing_layouts(8)
    patches = fig.findobj(FancyBboxPatch)
    interleaved, half_split = patches[:8], patches[8:]
    colour = [tuple(p.get_facecolor()) for p in interleaved]
    assert colour[0] == colour[1] and colour[2] == colour[3] and colour[1] != colour[2]
    colour = [tuple(p.get_facecolor()) for p in half_split]
    assert colour[0] == colour[4] and colour[3] == colour[7] and colour[0] != colour[1]


def test_rope_barcode_is_cos_of_transformers_frequencies():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = attnviz.tiny_config(head_dim=64, num_attention_heads=2, hidden_size=128)
    inv_freq, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    table = np.asarray(diagrams.rope_barcode(head_dim=64, positions=32).axes[0].images[0].get_array())
    assert np.allclose(table, np.cos(np.arange(32)[:, None] * inv_freq.numpy()[None, :]), atol=1e-6)


def test_is_causal_paths_agree_with_the_measured_matrix():
    rows = json.loads(attnviz.repo_file("book/data/compat.json").read_text())
    seed_eager = {
        r["transformers"]: r["attends_to_future"] for r in rows if r["patch"] == "seed" and r["backend"] == "eager"
    }
    kept = {release: dict(steps) for release, steps in diagrams.IS_CAUSAL_PATHS}
    eager_step = {
        release: next(ok for text, ok in steps.items() if text.startswith(("eager", "create_causal_mask")))
        for release, steps in kept.items()
    }
    for version, both_ways in seed_eager.items():
        major, minor = (int(x) for x in version.split(".")[:2])
        release = (
            "4.52 and earlier"
            if (major, minor) <= (4, 52)
            else "4.53 to 5.1"
            if (major, minor) < (5, 2)
            else "5.2 and later"
        )
        assert eager_step[release] is both_ways, (version, release)
    fig = diagrams.is_causal_paths()
    edges = {tuple(p.get_edgecolor()) for p in fig.findobj(FancyBboxPatch)}
    assert len(edges) == 3  # neutral headers, kept (green), dropped (red)


def test_set_pipeline_names_the_pieces():
    text = " ".join(_strings(diagrams.set_pipeline())).replace("\n", " ")
    for piece in ("encoder", "perturbation", "inputs_embeds", "bidirectional", "NoRoPE", "decoder"):
        assert piece in text
