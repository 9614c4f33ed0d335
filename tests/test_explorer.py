"""The live explorer driven in code, and the kernel-free view's HTML."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import unpatched_attentions
from torch.testing import assert_close

import attnviz


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


@pytest.fixture
def explorer(demo):
    model, tokenizer = demo
    return attnviz.AttentionExplorer(model, tokenizer)


def _largest_change(explorer) -> str:
    return re.search(r"largest change from the unpatched model in this layer: ([0-9.]+)", explorer.status.value)[1]


def test_toggles_redraw_one_image_in_place(explorer):
    image, first, redraws = explorer.image, explorer.image.value, explorer.redraws
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert "causal + RoPE" in explorer.status.value and "causal, uses positions" in explorer.status.value
    explorer.causal.value = "bidirectional"
    assert explorer.image is image and explorer.redraws == redraws + 1 and explorer.image.value != first
    assert "attends both ways" in explorer.status.value
    explorer.rope.value = "NoRoPE"
    assert "ignores positions" in explorer.status.value
    explorer.causal.value, explorer.rope.value = "causal", "RoPE"
    assert _largest_change(explorer) == "0.000"


@pytest.mark.parametrize("layer", [0, 1])
def test_each_variant_draws_its_weights_and_reports_how_far_they_moved(demo, layer):
    # The reference is the eager model's own output_attentions with the variant made by its inputs
    # (conftest.unpatched_attentions), so neither the patches nor capture_attention check themselves.
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    explorer = attnviz.AttentionExplorer(model, tokenizer)
    explorer.layer.value = layer
    explorer.head.value = 0  # it opens on head 3 (chapter 9's head); head 0 here
    plain = unpatched_attentions(model, ids)[layer][0]  # (heads, q_len, k_len)
    for name, flags in attnviz.VARIANTS.items():
        explorer.causal.value = "bidirectional" if flags["bidirectional"] else "causal"
        explorer.rope.value = "NoRoPE" if flags["no_rope"] else "RoPE"
        expected = unpatched_attentions(model, ids, **flags)[layer][0]
        drawn = explorer._images[0].get_array()  # head 0, as drawn, with masked cells masked
        assert_close(torch.from_numpy(drawn.filled(0.0)).float(), expected[0], msg=name)
        assert (drawn.mask == (expected[0] == 0).numpy()).all(), name
        moved = (expected - plain).abs().max().item()
        assert _largest_change(explorer) == f"{moved:.3f}", name
        if name != "causal + RoPE":
            assert moved > 0.05, f"{name} should move layer {layer}'s weights"


def test_masked_cells_come_from_the_variant_never_from_zero_weights(explorer):
    import numpy as np

    def grey():
        return np.ma.getmaskarray(explorer._images[0].get_array())

    upper = np.triu(np.ones((32, 32), dtype=bool), k=1)
    assert np.array_equal(grey(), upper)  # causal: the upper triangle, as the mask says
    explorer.causal.value = "bidirectional"
    assert not grey().any()  # bidirectional: nothing is masked, whatever the weights
    explorer.causal.value = "causal"
    assert np.array_equal(grey(), upper)


def test_it_opens_on_the_previous_token_head(explorer, demo):
    """Chapter 9's image of the widget shows head 3, the head its text is about."""
    model, _ = demo
    assert explorer.head.value == 3 and explorer.layer.value == 0
    assert attnviz.offset_score(attnviz.capture_attention(model, input_ids=explorer.input_ids)[0]).argmax() == 3
    small = attnviz.tiny_model("llama", num_attention_heads=2, num_key_value_heads=2)
    assert attnviz.AttentionExplorer(small, None, torch.tensor([[1, 2, 3]])).head.value == 0


def test_layers_heads_backends_and_own_tokens(explorer):
    explorer.head.value = "all"
    explorer.layer.value = 1
    explorer.backend.value = "sdpa"
    assert "backend sdpa" in explorer.status.value
    assert explorer.model.config._attn_implementation == "eager", "the caller's backend must be put back"
    explorer.text.value = "<bos> a b c | a b c"
    assert explorer.input_ids.shape == (1, 8)
    before = explorer.redraws
    explorer.text.value = "<bos> a zz"
    assert explorer.redraws == before and "unknown tokens zz" in explorer.status.value
    assert explorer.input_ids.shape == (1, 8)


def test_static_view_is_self_contained(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    assert "<canvas" in html and "<script>" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the view must not load anything from the network"
    assert len(html.encode()) < 400_000


def test_static_view_embeds_all_four_variants(demo):
    """Every variant's weights as the page draws them: rounded to 3 decimals, -1 where masked."""
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    html = attnviz.static_view(model, tokenizer).data
    data = json.loads(re.search(r'<script type="application/json" class="attnviz-data">(.*?)</script>', html, re.S)[1])
    assert data["tokens"] == tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert sorted(data["variants"]) == sorted(attnviz.VARIANTS)
    for name, flags in attnviz.VARIANTS.items():
        embedded = torch.tensor(data["variants"][name])  # (layers, heads, q_len, k_len)
        expected = torch.stack([layer[0] for layer in unpatched_attentions(model, ids, **flags)])
        assert embedded.shape == expected.shape == (2, 4, 32, 32), name
        masked = embedded == -1
        assert torch.equal(masked, expected == 0), f"{name}: masked cells are not where the weights are 0"
        assert_close(embedded[~masked], expected[~masked], atol=5e-4, rtol=0, msg=name)


def test_static_view_is_byte_identical_across_processes(demo):
    """Two builds of the book must give the same HTML: no salted hash(), no timestamps."""
    code = "import hashlib, attnviz; print(hashlib.sha256(attnviz.static_view().data.encode()).hexdigest())"
    seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)  # another salt than this process's
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = hashlib.sha256(attnviz.static_view(*demo).data.encode()).hexdigest()
    assert result.stdout.strip() == here


def test_static_view_ships_its_script_and_style_from_package_data(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    from importlib import resources

    static = resources.files("attnviz") / "static"
    assert (static / "explorer.js").read_text(encoding="utf-8") in html
    assert (static / "explorer.css").read_text(encoding="utf-8") in html
    assert "{{" not in html, "a placeholder of explorer.html was left unfilled"
