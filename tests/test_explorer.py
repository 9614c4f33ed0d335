"""The live explorer driven in code, and the kernel-free view's HTML."""

import hashlib
import os
import re
import subprocess
import sys

import pytest
import torch

import attnviz
from attnviz.view import static_data


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


@pytest.fixture
def explorer(demo):
    model, tokenizer = demo
    return attnviz.AttentionExplorer(model, tokenizer)


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
    assert "largest change from the unpatched model in this layer: 0.000" in explorer.status.value


def test_it_opens_on_the_previous_token_head(explorer, demo):
    """Chapter 8's image of the widget shows head 3, the head its text is about."""
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


def test_variants_match_the_patches(demo):
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    with attnviz.patched(model, **attnviz.VARIANTS["causal + RoPE"]):
        causal_rope = attnviz.capture_attention(model, input_ids=ids)
    torch.testing.assert_close(causal_rope[0], attnviz.capture_attention(model, input_ids=ids)[0])
    with attnviz.patched(model, **attnviz.VARIANTS["bidirectional + NoRoPE"]):
        bid = attnviz.capture_attention(model, input_ids=ids)
    upper = torch.ones(32, 32, dtype=torch.bool).triu(1)
    assert torch.all(bid[0][0][:, upper] > 0) and torch.all(causal_rope[0][0][:, upper] == 0)
    assert "forward" not in vars(model.model) and type(model.model.rotary_emb).__name__ == "LlamaRotaryEmbedding"


def test_static_view_is_self_contained(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    assert "<canvas" in html and "<script>" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the view must not load anything from the network"
    for name in attnviz.VARIANTS:
        assert f'"{name}"' in html
    data = static_data(model, attnviz.demo_example(tokenizer), ["t"] * 32)
    assert len(data["variants"]["causal + RoPE"]) == 2 and len(data["variants"]["causal + RoPE"][0]) == 4
    assert len(html.encode()) < 400_000
    causal = torch.tensor(data["variants"]["causal + RoPE"])
    upper = torch.ones(32, 32, dtype=torch.bool).triu(1)
    assert torch.all(causal[..., upper] == -1) and torch.all(causal[..., ~upper] >= 0)


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
