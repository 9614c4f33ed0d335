"""The live explorer driven in code, and the kernel-free view's HTML."""

import re

import pytest
import torch

import attnviz
from attnviz.explorer import VARIANTS, attention_variant, static_data


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


def test_layers_heads_backends_and_own_tokens(explorer):
    explorer.head.value = "all"
    explorer.layer.value = 1
    explorer.backend.value = "sdpa"
    assert explorer.model.config._attn_implementation == "sdpa"
    explorer.text.value = "<bos> a b c | a b c"
    assert explorer.input_ids.shape == (1, 8)
    before = explorer.redraws
    explorer.text.value = "<bos> a zz"
    assert explorer.redraws == before and "unknown tokens zz" in explorer.status.value
    assert explorer.input_ids.shape == (1, 8)


def test_variants_match_the_patches(demo):
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    causal_rope = attention_variant(model, ids, True, True)
    torch.testing.assert_close(causal_rope[0], attnviz.capture_attention(model, input_ids=ids)[0])
    bid = attention_variant(model, ids, False, False)
    upper = torch.ones(32, 32, dtype=torch.bool).triu(1)
    assert torch.all(bid[0][0][:, upper] > 0) and torch.all(causal_rope[0][0][:, upper] == 0)
    assert "forward" not in vars(model.model) and type(model.model.rotary_emb).__name__ == "LlamaRotaryEmbedding"


def test_static_view_is_self_contained(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    assert "<canvas" in html and "<script>" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the view must not load anything from the network"
    for name in VARIANTS:
        assert f'"{name}"' in html
    data = static_data(model, attnviz.demo_example(tokenizer), ["t"] * 32)
    assert len(data["variants"]["causal + RoPE"]) == 2 and len(data["variants"]["causal + RoPE"][0]) == 4
    assert len(html.encode()) < 400_000
    causal = torch.tensor(data["variants"]["causal + RoPE"])
    upper = torch.ones(32, 32, dtype=torch.bool).triu(1)
    assert torch.all(causal[..., upper] == -1) and torch.all(causal[..., ~upper] >= 0)
