import pytest
import torch
from transformers import LlamaModel

import attnviz


def test_tiny_config_has_the_book_sizes():
    config = attnviz.tiny_config()
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (
        128,
        4,
        2,
        32,
    )
    assert config._attn_implementation == "eager"


def test_overrides_reach_the_module():
    model = attnviz.tiny_model(num_key_value_heads=4, attn_implementation="sdpa")
    attn = model.layers[0].self_attn
    assert attn.num_key_value_groups == 1
    assert attn.k_proj.weight.shape == (128, 128)
    assert model.config._attn_implementation == "sdpa"


def test_seed_fixes_the_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = attnviz.tiny_model(seed=7)
    assert torch.equal(torch.rand(3), expected_next), "tiny_model consumed the global random stream"
    b = attnviz.tiny_model(seed=7)
    c = attnviz.tiny_model(seed=8)
    assert isinstance(a, LlamaModel) and not a.training
    assert torch.equal(a.layers[0].self_attn.q_proj.weight, b.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(a.layers[0].self_attn.q_proj.weight, c.layers[0].self_attn.q_proj.weight)


def test_config_argument():
    config = attnviz.tiny_config(num_hidden_layers=1)
    assert len(attnviz.tiny_model("llama", config).layers) == 1
    with pytest.raises(ValueError, match="either a config or config fields"):
        attnviz.tiny_model("llama", config, num_hidden_layers=3)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_attention_heads=4, num_key_value_heads=3), "multiple of num_key_value_heads"),
        (dict(attn_implementation="fast"), "unknown attn_implementation 'fast'"),
        (dict(attn_implementation="flex_attention", head_dim=16), "head_dim >= 32"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(overrides, message):
    with pytest.raises(ValueError, match=message):
        attnviz.tiny_config(**overrides)


def test_eager_and_sdpa_agree_on_the_tiny_model():
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        eager = attnviz.tiny_model(seed=1)(ids).last_hidden_state
        sdpa = attnviz.tiny_model(seed=1, attn_implementation="sdpa")(ids).last_hidden_state
    torch.testing.assert_close(eager, sdpa)
