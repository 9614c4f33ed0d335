import matplotlib
import numpy as np
import pytest
import torch

import attnviz
from attnviz import plot
from attnviz.plot import MASKED_COLOR, heatmap

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def attentions():
    ids = torch.tensor([[5, 17, 42, 8, 5, 99]])
    with torch.no_grad():
        return attnviz.tiny_model()(ids, output_attentions=True).attentions


def _image(fig):
    (ax,) = [a for a in fig.axes if a.get_images()]
    return ax, ax.get_images()[0]


def test_heatmap_returns_a_figure_with_labels_on_both_axes(attentions):
    tokens = ["<s>", "the", "cat", "sat", "the", "mat"]
    fig = heatmap(attentions[0][0, 1], tokens, title="layer 0 head 1")
    ax, _ = _image(fig)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert ax.get_title() == "layer 0 head 1"
    assert "key" in ax.get_xlabel() and "query" in ax.get_ylabel()


def test_masked_cells_are_the_ones_the_mask_forbids(attentions):
    weights = attentions[0][0, 0].clone()
    weights[5, 0] = 1e-12  # tiny but allowed: must stay on the colour scale
    allowed = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    fig = heatmap(weights, mask=allowed)
    ax, image = _image(fig)
    data = image.get_array()
    assert np.array_equal(np.ma.getmaskarray(data), ~allowed.numpy())
    assert not np.ma.getmaskarray(data)[5, 0]
    assert matplotlib.colors.to_hex(image.get_cmap().get_bad()) == MASKED_COLOR
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["masked"]
    fig.canvas.draw()  # renders without error


def test_a_weight_of_exactly_zero_is_never_taken_for_a_masked_cell():
    # exp(-104) underflows to 0.0 in float32: an allowed cell whose weight is exactly 0
    weights = torch.softmax(torch.tensor([[0.0, -104.0], [0.0, 0.0]]), -1)
    assert weights[0, 1] == 0.0
    for fig in (heatmap(weights), heatmap(weights, mask=torch.ones(2, 2, dtype=torch.bool))):
        _, image = _image(fig)
        assert not np.ma.getmaskarray(image.get_array()).any()
        assert fig.axes[0].get_legend() is None


def test_draws_into_a_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert heatmap(torch.full((3, 3), 1 / 3), ax=ax) is fig


@pytest.mark.parametrize("shape", [(1, 4, 6, 6), (6,), (4, 6, 6)])
def test_wrong_shapes_say_how_to_pick_one_head(shape):
    with pytest.raises(ValueError, match=r"shape \(q_len, k_len\).*attentions\[layer\]\[0, head\]"):
        heatmap(torch.rand(shape))


def test_mismatched_tokens_are_refused():
    with pytest.raises(ValueError, match="got 5 token labels for 6 key positions"):
        heatmap(torch.rand(6, 6), tokens=list("abcde"))


def test_mask_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="mask has shape"):
        heatmap(torch.rand(3, 3), mask=torch.ones(3, 4, dtype=torch.bool))


def test_too_long_sequences_need_an_explicit_choice():
    weights = torch.softmax(torch.rand(130, 130), dim=-1)
    with pytest.raises(ValueError, match="too large to read.*max_tokens=None"):
        heatmap(weights)
    assert heatmap(weights, max_tokens=None) is not None


def test_queries_are_the_last_positions_when_fewer_than_keys():
    fig = heatmap(torch.full((2, 4), 0.25), tokens=["a", "b", "c", "d"])
    ax, _ = _image(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "d"]


def test_head_grid_draws_every_head_on_one_scale(attentions):
    from attnviz.plot import head_grid

    fig = head_grid(attentions, layer=1, tokens=list("abcdef"))
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["head 0", "head 1", "head 2", "head 3"]
    assert len({ax.get_images()[0].get_clim() for ax in panels}) == 1, "heads drawn on different scales"
    assert "Layer 1" in fig._suptitle.get_text()
    for h, ax in enumerate(panels):
        data = ax.get_images()[0].get_array()
        assert np.allclose(data.filled(0), attentions[1][0, h].numpy())
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    masked = head_grid(attentions, layer=1, mask=causal)
    for ax in (a for a in masked.axes if a.get_images()):
        assert np.array_equal(np.ma.getmaskarray(ax.get_images()[0].get_array()), ~causal.numpy())


def test_head_grid_errors_say_what_to_do(attentions):
    from attnviz.plot import head_grid

    with pytest.raises(ValueError, match="layer 5 does not exist: the model has 2 layers"):
        head_grid(attentions, layer=5)
    with pytest.raises(ValueError, match="backend returned no weights.*capture_attention"):
        head_grid((), layer=0)
    with pytest.raises(ValueError, match="one \\(batch, heads, q_len, k_len\\) tensor per layer"):
        head_grid(attentions[0], layer=0)
    with pytest.raises(ValueError, match="batch index 3"):
        head_grid(attentions, layer=0, batch=3)


def test_compare_shares_a_scale_and_centres_the_difference(attentions):
    from attnviz.plot import compare

    before, after = attentions[0][0, 0], attentions[1][0, 0]
    fig = compare(before, after, titles=("layer 0", "layer 1"))
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["layer 0", "layer 1", "after - before"]
    assert panels[0].get_images()[0].get_clim() == panels[1].get_images()[0].get_clim()
    low, high = panels[2].get_images()[0].get_clim()
    assert high > 0 and low == -high
    delta = panels[2].get_images()[0].get_array()
    assert np.allclose(delta.filled(0), (after - before).numpy())
    assert not np.ma.getmaskarray(panels[0].get_images()[0].get_array()).any()  # no mask given: none drawn
    assert panels[2].get_images()[0].get_cmap().name.startswith("RdBu_r")
    assert len([ax for ax in compare(before, after, diff=False).axes if ax.get_images()]) == 2


def test_compare_draws_the_masks_it_is_given(attentions):
    from attnviz.plot import compare

    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    before, after = attentions[0][0, 0], torch.full((6, 6), 1 / 6)
    fig = compare(before, after, masks=(causal, None))
    grey = [np.ma.getmaskarray(ax.get_images()[0].get_array()) for ax in fig.axes if ax.get_images()]
    assert np.array_equal(grey[0], ~causal.numpy()) and not grey[1].any()
    assert not grey[2].any()  # the difference is masked only where both maps are
    one_for_all = compare(before, before, masks=causal, diff=False)
    assert all(
        np.array_equal(np.ma.getmaskarray(ax.get_images()[0].get_array()), ~causal.numpy())
        for ax in one_for_all.axes
        if ax.get_images()
    )
    with pytest.raises(ValueError, match="masks must be"):
        compare([before, before], [after, after], masks=[(causal, None)])


def test_compare_refuses_mismatched_maps():
    from attnviz.plot import compare

    with pytest.raises(ValueError, match="same shape"):
        compare(torch.rand(4, 4), torch.rand(5, 5))
    with pytest.raises(ValueError, match="two entries"):
        compare(torch.rand(4, 4), torch.rand(4, 4), titles=("only one",))


def test_panels_one_scale_each_or_shared_and_explicit_masks():
    from attnviz.plot import panels

    scores = torch.randn(4, 4) * 5
    allowed = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    fig = panels([scores, probs], ["scores", "probabilities"], masks=[None, allowed])
    imgs = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert not np.ma.getmaskarray(imgs[0].get_array()).any(), "raw scores have nothing masked"
    assert np.array_equal(np.ma.getmaskarray(imgs[1].get_array()), ~allowed.numpy())
    assert imgs[0].get_clim() != imgs[1].get_clim()
    shared = panels([probs, probs * 0.5], ["a", "b"], share_scale=True, tokens=[list("abcd"), list("wxyz")])
    imgs = [ax.get_images()[0] for ax in shared.axes if ax.get_images()]
    assert imgs[0].get_clim() == imgs[1].get_clim()
    assert [t.get_text() for t in shared.axes[1].get_xticklabels()] == list("wxyz")


def test_panels_errors():
    from attnviz.plot import panels

    with pytest.raises(ValueError, match="one title per map"):
        panels([torch.rand(3, 3)], ["a", "b"])
    with pytest.raises(ValueError, match="masks"):
        panels([torch.rand(3, 3)], ["a"], masks=[None, None])
    with pytest.raises(ValueError, match="token lists"):
        panels([torch.rand(3, 3)] * 2, ["a", "b"], tokens=[list("abc")])


def test_curves_labels_and_lengths():
    from attnviz.plot import curves

    fig = curves([1, 2, 3], {"up": [1, 2, 3], "down": [3, 2, 1]}, xlabel="x", ylabel="y", logy=True, title="t")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_yscale()) == ("x", "y", "t", "log")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "down"]
    with pytest.raises(ValueError, match="2 values for 3 x values"):
        curves([1, 2, 3], {"short": [1, 2]}, xlabel="x", ylabel="y")
    banded = curves([1, 2, 3], {"up": [1, 2, 3]}, xlabel="x", ylabel="y", bands={"steep part": (1, 2)})
    assert [t.get_text() for t in banded.axes[0].get_legend().get_texts()] == ["steep part", "up"]
    assert len(banded.axes[0].patches) == 1


@pytest.mark.parametrize("logx, logy", [(True, False), (False, True), (True, True), (False, False)])
def test_curves_puts_each_axis_on_the_scale_asked_for(logx, logy):
    from attnviz.plot import curves

    fig = curves([256, 1024, 8192], {"s": [0.1, 1.0, 30.0]}, xlabel="tokens", ylabel="s", logx=logx, logy=logy)
    ax = fig.axes[0]
    assert ax.get_xscale() == ("log" if logx else "linear")
    assert ax.get_yscale() == ("log" if logy else "linear")


@pytest.mark.parametrize("heads, kv, kind", [(4, 4, "multi-head"), (8, 2, "grouped-query"), (4, 1, "multi-query")])
def test_gqa_groups_connects_each_query_head_to_its_kv_head(heads, kv, kind):
    from attnviz.plot import gqa_groups

    fig = gqa_groups(heads, kv)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == heads
    groups = heads // kv
    for h, line in enumerate(lines):
        (qx, kvx), _ = line.get_data()
        assert qx == h and kvx == (h // groups + 0.5) * groups - 0.5
    assert ax.get_title().startswith(kind)
    with pytest.raises(ValueError, match="multiple"):
        gqa_groups(4, 3)


def test_compare_rows_make_a_grid(attentions):
    from attnviz.plot import compare

    maps = [attentions[0][0, h] for h in range(4)]
    fig = compare(maps[:2], maps[2:], titles=("causal", "bidirectional"), row_titles=("RoPE", "NoRoPE"), diff=False)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["RoPE: causal", "RoPE: bidirectional", "NoRoPE: causal", "NoRoPE: bidirectional"]
    assert len({ax.get_images()[0].get_clim() for ax in fig.axes if ax.get_images()}) == 1
    with pytest.raises(ValueError, match="pair them one to one"):
        compare(maps[:2], maps[2:3])
    with pytest.raises(ValueError, match="row titles"):
        compare(maps[:2], maps[2:], row_titles=("only one",))


# -- sized for the book's column ---------------------------------------------------------------
def _all_text_sizes(fig):
    from matplotlib.text import Text

    return [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _figures(attentions):
    tokens = [f"t{i}" for i in range(6)]
    weights = attentions[0][0]
    return {
        "heatmap": plot.heatmap(weights[0], tokens),
        "head_grid": plot.head_grid(attentions, 0, tokens),
        "compare": plot.compare(weights[0], weights[1], tokens),
        "panels": plot.panels([weights[h] for h in range(4)], [f"head {h}" for h in range(4)], tokens),
        "curves": plot.curves([1, 2, 4], {"a": [1, 2, 3]}, xlabel="x", ylabel="y"),
        "gqa_groups": plot.gqa_groups(64, 8),
    }


def test_every_figure_fits_the_column_with_readable_text(attentions):
    for name, fig in _figures(attentions).items():
        width = fig.get_size_inches()[0] * fig.dpi
        assert width <= 690, f"{name}: {width:.0f} px wide"
        assert min(_all_text_sizes(fig)) >= 9, f"{name}: text under 9 points"


def _panel_rows(fig):
    heatmaps = [ax for ax in fig.axes if ax.get_images() and ax.get_visible()]
    return len({round(ax.get_position().y0, 3) for ax in heatmaps}), heatmaps


def test_more_than_two_panels_wrap_into_rows_under_one_colour_bar(attentions):
    fig = plot.head_grid(attentions, 0)  # 4 heads
    rows, heatmaps = _panel_rows(fig)
    assert (rows, len(heatmaps)) == (2, 4)
    colour_bars = [ax for ax in fig.axes if not ax.get_images() and ax.collections]
    assert len(colour_bars) == 1
    rows, heatmaps = _panel_rows(plot.panels([torch.rand(4, 4)] * 3, ["a", "b", "c"], share_scale=True))
    assert (rows, len(heatmaps)) == (2, 3)
    rows, heatmaps = _panel_rows(plot.compare(torch.rand(4, 4), torch.rand(4, 4)))
    assert (rows, len(heatmaps)) == (2, 3)  # before and after, then the difference under them


def test_long_token_lists_are_thinned_not_shrunk():
    tokens = [f"tok{i}" for i in range(64)]
    fig = plot.heatmap(torch.rand(64, 64).softmax(-1), tokens)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 8 <= len(labels) < 64 and labels[0] == "tok0"
    assert min(_all_text_sizes(fig)) >= 9


def test_a_constant_panel_gets_its_value_instead_of_a_colour_bar():
    fig = plot.panels([torch.full((4, 4), 0.25), torch.rand(4, 4)], ["flat", "varied"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles[0] == "flat\n(every cell 0.25)"
    assert len(fig.axes) == 3  # two maps, one colour bar (for the varied one)


def test_log_x_axes_count_in_powers_of_two_without_minor_labels():
    fig = plot.curves([256, 512, 1024, 2048], {"a": [1, 2, 3, 4]}, xlabel="tokens", ylabel="s", logx=True)
    from matplotlib.ticker import NullFormatter

    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert isinstance(ax.xaxis.get_minor_formatter(), NullFormatter)
    assert {"256", "512", "1024", "2048"} <= {t.get_text() for t in ax.get_xticklabels()}
    assert plot.curves([1, 2], {"a": [1, 2]}, xlabel="x", ylabel="y").axes[0].get_xscale() == "linear"


# -- long inputs --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_maps():
    """A causal and a bidirectional map of one head, 512 tokens pooled to 32 x 32."""
    model = attnviz.tiny_model(attn_implementation="sdpa")
    ids = torch.randint(0, 256, (1, 512), generator=torch.Generator().manual_seed(0))
    maps = []
    for flag in (False, True):
        with attnviz.patched(model, bidirectional=flag):
            maps.append(attnviz.attention_map(model, layer=1, head=0, size=32, input_ids=ids))
    return maps


def test_pooled_map_has_token_axes_and_greys_what_the_mask_forbids(long_maps):
    from attnviz.plot import pooled_map

    causal, bidirectional = long_maps
    fig = pooled_map([causal, bidirectional], ["causal", "bidirectional"])
    left, right = [ax for ax in fig.axes if ax.get_images()]
    assert (left.get_title(), right.get_title()) == ("causal", "bidirectional")
    assert left.get_images()[0].get_clim() == right.get_images()[0].get_clim()
    assert left.get_images()[0].get_extent() == [0, 512, 512, 0]
    fig.canvas.draw()
    labels = [t.get_text() for t in left.get_xticklabels() if 0 <= t.get_position()[0] <= 512]
    assert labels == ["0", "128", "256", "384", "512"] and "key position" in left.get_xlabel()
    masked = np.ma.getmaskarray(left.get_images()[0].get_array())
    assert np.array_equal(masked, ~causal.allowed.numpy()) and masked[0, 1] and not masked[1, 0]
    assert not np.ma.getmaskarray(right.get_images()[0].get_array()).any()
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["masked"]
    assert "block max" in fig.axes[-1].get_ylabel()
    assert fig.get_figwidth() <= 6.9  # the book's ~690 px column


def test_pooled_map_log_scale_and_uneven_blocks(long_maps):
    from matplotlib.colors import LogNorm

    from attnviz.plot import _tokens_label, pooled_map

    image = pooled_map(long_maps[0], log=True).axes[0].get_images()[0]
    assert isinstance(image.norm, LogNorm) and 0 < image.norm.vmin < image.norm.vmax
    assert [_tokens_label(x) for x in (0, 512, 1024, 1536, 32768)] == ["0", "512", "1k", "1.5k", "32k"]
    pooled, edges = torch.rand(3, 3), torch.tensor([0, 3, 7, 10])
    ax = pooled_map((pooled, edges)).axes[0]
    assert ax.collections, "blocks of unequal width are drawn as a mesh"
    assert ax.get_xlim() == (0, 10) and ax.get_legend() is None  # a bare pair has no mask to show


def test_pooled_map_errors(long_maps):
    from attnviz.plot import pooled_map

    with pytest.raises(ValueError, match="one or two maps"):
        pooled_map(long_maps * 2)
    with pytest.raises(ValueError, match="one title per map"):
        pooled_map(long_maps, ["only one"])
    with pytest.raises(ValueError, match="what attnviz.attention_map returns"):
        pooled_map(torch.rand(4, 4))
    with pytest.raises(ValueError, match="size \\+ 1 edges"):
        pooled_map((torch.rand(4, 4), torch.arange(4)))


def test_attention_by_distance_log_axes_and_gaps(long_maps):
    from attnviz.plot import attention_by_distance, map_and_distance

    causal, bidirectional = long_maps
    fig = attention_by_distance({"causal": causal, "bidirectional": bidirectional.distance})
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("symlog", "log")
    (x_causal, y_causal), (x_both, y_both) = (line.get_data() for line in ax.get_lines()[:2])
    assert np.isnan(y_causal[x_causal < 0]).all(), "a causal head's later keys are masked: a gap, not a weight"
    assert (y_causal[x_causal >= 0] > 0).all() and (y_both > 0).all()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["causal", "bidirectional"]
    assert "< 0: after it" in ax.get_xlabel()
    assert "after it" not in attention_by_distance({"causal": causal}).axes[0].get_xlabel()
    with pytest.raises(ValueError, match="what attnviz.attention_map returns"):
        attention_by_distance({"x": torch.rand(3)})
    with pytest.raises(ValueError, match="at least one series"):
        attention_by_distance({})
    both = map_and_distance(causal, log=True, title="t")
    assert both.get_figwidth() <= 6.9 and both._suptitle.get_text() == "t"
    both.canvas.draw()


def test_compare_rows_with_differences_keep_every_panel_clear(attentions):
    """Two rows of before/after, each with its difference under it: no colour bar may lie over a
    map (chapter 11's opening figure had the difference's colour bar over its second row)."""
    from attnviz.plot import compare

    maps = [attentions[0][0, h] for h in range(4)]
    fig = compare(maps[:2], maps[2:], titles=("before", "after"), row_titles=("Llama", "Qwen3"))
    fig.canvas.draw()
    heatmaps = [ax for ax in fig.axes if ax.get_images()]
    bars = [ax for ax in fig.axes if not ax.get_images()]
    assert len(heatmaps) == 6 and bars
    for bar in bars:
        for ax in heatmaps:
            overlap = bar.get_window_extent().intersection(bar.get_window_extent(), ax.get_window_extent())
            assert overlap is None or overlap.width * overlap.height < 1, (bar.get_ylabel(), ax.get_title())
    titles = [ax.get_title() for ax in heatmaps]
    assert titles == [
        "Llama: before",
        "Llama: after",
        "Llama: after - before",
        "Qwen3: before",
        "Qwen3: after",
        "Qwen3: after - before",
    ]


def test_curves_tell_series_apart_without_colour():
    """Six equal curves drawn over each other: each keeps a pattern and a marker of its own."""
    from attnviz.plot import curves

    six = {f"series {i}": [1.0, 2.0, 3.0] for i in range(6)}
    lines = curves([1, 2, 3], six, xlabel="x", ylabel="y", marker="o").axes[0].get_lines()
    assert len({(str(line._dash_pattern), line.get_marker()) for line in lines}) == 6
    assert len({line.get_marker() for line in lines}) == 6 and lines[0].get_marker() == "o"
    assert [line.get_fillstyle() for line in lines] == ["full"] + ["none"] * 5  # hollow: see through
    plain = curves([1, 2, 3], six, xlabel="x", ylabel="y").axes[0].get_lines()
    assert len({str(line._dash_pattern) for line in plain}) == 6
    assert {line.get_marker() for line in plain} == {"None"}  # no markers unless asked for


def test_compare_leaves_room_between_a_row_s_axis_label_and_the_title_below_it():
    """The difference map's title sat 8 px under the maps' axis label above it (chapter 11)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from attnviz.plot import compare

    g = torch.Generator().manual_seed(0)
    before, after = (torch.softmax(torch.randn(12, 12, generator=g), -1) for _ in range(2))
    fig = compare([before, before], [after, after], row_titles=["A", "B"])
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    for row in ("A", "B"):
        label = titled[f"{row}: before"].xaxis.label.get_window_extent(renderer)
        title = titled[f"{row}: after - before"].title.get_window_extent(renderer)
        assert label.y0 - title.y1 >= 0.15 * fig.dpi, f"row {row}: {label.y0 - title.y1:.0f} px"
