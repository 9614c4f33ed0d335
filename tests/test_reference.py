"""attnviz.reference against transformers 5.24 itself."""

import pytest
import torch
from torch.testing import assert_close
from transformers.masking_utils import create_causal_mask
from transformers.models.llama import modeling_llama as ml

import attnviz
from attnviz import reference


def _qkv(batch=2, heads=4, kv_heads=2, seq=7, head_dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, seq, head_dim, generator=g)
    k = torch.randn(batch, kv_heads, seq, head_dim, generator=g)
    v = torch.randn(batch, kv_heads, seq, head_dim, generator=g)
    return q, k, v


@pytest.mark.parametrize("n_rep", [1, 2, 4])
def test_repeat_kv_matches_transformers_and_repeat_interleave(n_rep):
    x = torch.randn(2, 2, 5, 32)
    assert torch.equal(reference.repeat_kv(x, n_rep), ml.repeat_kv(x, n_rep))
    assert torch.equal(reference.repeat_kv(x, n_rep), x.repeat_interleave(n_rep, dim=1))


def test_rotate_half_matches_transformers():
    x = torch.randn(2, 4, 6, 32)
    assert torch.equal(reference.rotate_half(x), ml.rotate_half(x))


def test_rope_tables_and_rotation_match_llama():
    model = attnviz.tiny_model()
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 9]])
    x = torch.zeros(2, 7, 128)
    cos, sin = model.rotary_emb(x, position_ids)
    my_cos, my_sin = reference.rope_cos_sin(position_ids, head_dim=32, theta=model.config.rope_parameters["rope_theta"])
    assert_close(my_cos, cos)
    assert_close(my_sin, sin)
    q, k, _ = _qkv()
    assert_close(reference.apply_rope(q, k, cos, sin), ml.apply_rotary_pos_emb(q, k, cos, sin))


def _eager_module(heads=4, kv_heads=2):
    return attnviz.tiny_model(num_attention_heads=heads, num_key_value_heads=kv_heads).layers[0].self_attn


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_eager_attention_matches_transformers_with_gqa(kv_heads):
    module = _eager_module(kv_heads=kv_heads)
    q, k, v = _qkv(kv_heads=kv_heads)
    mask = reference.causal_padding_mask(None, 7)
    expected = ml.eager_attention_forward(module, q, k, v, mask, scaling=module.scaling, dropout=0.0)
    assert_close(reference.eager_attention(q, k, v, mask, scaling=module.scaling), expected)


def test_default_scaling_is_inverse_sqrt_head_dim():
    module = _eager_module()
    q, k, v = _qkv()
    expected = ml.eager_attention_forward(module, q, k, v, None, scaling=32**-0.5)
    assert_close(reference.eager_attention(q, k, v), expected)


def test_eager_attention_refuses_mismatched_heads():
    q, k, v = _qkv(heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="not a multiple"):
        reference.eager_attention(q, k, v)


@pytest.mark.parametrize("causal", [True, False])
def test_masks_match_transformers_on_a_padded_batch(causal):
    config = attnviz.tiny_config(is_causal=causal)
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # left padding in row 0
    embeds = torch.zeros(2, 6, config.hidden_size)
    expected = create_causal_mask(
        config=config,
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        cache=None,
        position_ids=torch.arange(6)[None],
    )
    mine = reference.causal_padding_mask(attention_mask, 6, causal=causal)
    assert torch.equal(mine.expand_as(expected), expected)


def test_eager_attention_with_padding_matches_transformers():
    module = _eager_module()
    q, k, v = _qkv(seq=6)
    mask = reference.causal_padding_mask(torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]), 6)
    out, weights = reference.eager_attention(q, k, v, mask, scaling=module.scaling)
    expected_out, expected_weights = ml.eager_attention_forward(module, q, k, v, mask, scaling=module.scaling)
    assert_close(out, expected_out)
    assert_close(weights, expected_weights)
    assert torch.isfinite(weights).all(), "a fully padded query row must stay finite"
    assert torch.all(weights[0, :, 2:, :2] == 0), "real tokens must not see the padding"


def test_causal_mask_with_a_cache_offset():
    allowed = reference.causal_mask(2, 5)
    assert allowed.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_padding_mask_needs_2d():
    with pytest.raises(ValueError, match="2D"):
        reference.padding_mask(torch.ones(1, 1, 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_eager_attention_in_half_precision_is_transformers_to_the_bit(dtype):
    # the scores are softmaxed in float32 and the weights come back in the inputs' dtype
    module = _eager_module()
    q, k, v = (t.to(dtype) for t in _qkv())
    mask = reference.causal_padding_mask(None, 7, dtype=dtype)
    out, weights = reference.eager_attention(q, k, v, mask, scaling=module.scaling)
    expected_out, expected_weights = ml.eager_attention_forward(module, q, k, v, mask, scaling=module.scaling)
    assert weights.dtype == out.dtype == dtype
    assert torch.equal(weights, expected_weights) and torch.equal(out, expected_out)


def test_rms_norm_in_bfloat16_and_its_default_eps_match_qwen3():
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    norm = Qwen3RMSNorm(32, eps=1e-6)
    norm.weight.data = torch.linspace(0.5, 2.0, 32)
    x = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(1)) * 3
    assert_close(reference.rms_norm(x, norm.weight), norm(x), rtol=0, atol=1e-6)
    norm, x = norm.to(torch.bfloat16), x.to(torch.bfloat16)
    mine = reference.rms_norm(x, norm.weight)
    assert mine.dtype == torch.bfloat16 and torch.equal(mine, norm(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_tables_with_the_default_theta_in_each_dtype(dtype):
    model = attnviz.tiny_model(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    position_ids = torch.tensor([[0, 5, 17, 300]])
    cos, sin = model.rotary_emb(torch.zeros(1, 4, 128, dtype=dtype), position_ids)
    my_cos, my_sin = reference.rope_cos_sin(position_ids, head_dim=32, dtype=dtype)
    assert my_cos.dtype == my_sin.dtype == dtype
    assert_close(my_cos, cos)
    assert_close(my_sin, sin)


def test_masks_default_to_causal_and_keep_their_shape_dtype_and_device():
    assert reference.causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    mask = reference.causal_padding_mask(None, 3)
    assert mask.shape == (1, 1, 3, 3) and mask.dtype == torch.float32
    assert torch.equal(mask[0, 0] == 0, reference.causal_mask(3))
    # two new queries over five keys, the first of them padding (as a cache would give)
    padded = reference.causal_padding_mask(torch.tensor([[0, 1, 1, 1, 1]]), 2, dtype=torch.float16)
    assert padded.shape == (1, 1, 2, 5) and padded.dtype == torch.float16
    allowed = [[False, True, True, True, False], [False, True, True, True, True]]
    assert (padded[0, 0] == 0).tolist() == allowed
    assert padded.min().item() == torch.finfo(torch.float16).min
    half = reference.additive_mask(torch.tensor([True, False]), torch.float16)
    assert half.dtype == torch.float16 and half.tolist() == [0.0, torch.finfo(torch.float16).min]


def test_tables_and_masks_are_made_on_the_device_asked_for():
    # "meta" stands for any device other than the CPU: nothing may silently fall back to the CPU
    meta = torch.device("meta")
    assert reference.causal_mask(3, 5, device=meta).device == meta
    assert reference.additive_mask(torch.ones(2, 2, dtype=torch.bool, device=meta)).device == meta
    assert reference.causal_padding_mask(torch.ones(1, 4, dtype=torch.long, device=meta), 4).device == meta
    cos, sin = reference.rope_cos_sin(torch.arange(4, device=meta)[None], head_dim=32)
    assert cos.device == sin.device == meta


def test_layer_mask_is_the_pattern_transformers_builds():
    from transformers import masking_utils

    from attnviz.reference import layer_mask

    config = attnviz.tiny_config()
    embeds = torch.zeros(1, 6, config.hidden_size)
    causal = masking_utils.create_causal_mask(config, embeds, None, cache=None) == 0  # eager form
    assert torch.equal(layer_mask(6, bidirectional=False), causal[0, 0])
    both_ways = masking_utils.create_bidirectional_mask(config, embeds, None)
    # transformers gives None when nothing is masked: every query sees every key
    assert both_ways is None and torch.equal(layer_mask(6, bidirectional=True), torch.ones(6, 6, dtype=torch.bool))
    windowed = attnviz.tiny_config("mistral", sliding_window=3)
    sliding = masking_utils.create_sliding_window_causal_mask(windowed, embeds, None, cache=None) == 0
    assert torch.equal(layer_mask(6, bidirectional=False, window=3), sliding[0, 0])
    around = masking_utils.create_bidirectional_sliding_window_mask(windowed, embeds, None) == 0
    assert torch.equal(layer_mask(6, bidirectional=True, window=3), around[0, 0])


def test_rms_norm_adds_eps_inside_the_root_as_llama_does():
    norm = ml.LlamaRMSNorm(32, eps=0.5)  # an eps large enough to show where it goes
    norm.weight.data = torch.linspace(0.5, 2.0, 32)
    x = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(2))
    assert_close(reference.rms_norm(x, norm.weight, eps=0.5), norm(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_a_window_of_one_token_is_the_mask_transformers_builds(causal):
    from transformers.masking_utils import create_bidirectional_sliding_window_mask, create_sliding_window_causal_mask

    config = attnviz.tiny_config("mistral", sliding_window=1)
    embeds = torch.zeros(1, 6, config.hidden_size)
    if causal:
        built = create_sliding_window_causal_mask(config, embeds, None, cache=None)
    else:
        built = create_bidirectional_sliding_window_mask(config, embeds, None)
    mine = reference.sliding_window_mask(6, 1, causal=causal)
    assert torch.equal(mine, built[0, 0] == 0)
    assert mine.sum(-1).tolist() == ([1] * 6 if causal else [2, 3, 3, 3, 3, 2])
