"""capture_attention returns eager's weights whatever the backend, and leaves the model as it was."""

import pytest
import torch
from torch.testing import assert_close
from transformers import GPT2Config, GPT2Model, LlamaForCausalLM

import attnviz

IDS = torch.tensor([[5, 17, 42, 8, 5, 99, 23, 61], [3, 4, 5, 6, 7, 8, 9, 10]])
PADDED = torch.tensor([[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1]])


@pytest.mark.parametrize("backend", ["eager", "sdpa", "flex_attention"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_weights_equal_eager_output_attentions(backend, bidirectional, padded):
    inputs = {"input_ids": IDS, **({"attention_mask": PADDED} if padded else {})}
    eager = attnviz.tiny_model(seed=3)
    model = attnviz.tiny_model(seed=3, attn_implementation=backend)
    with attnviz.patched(eager, bidirectional=bidirectional), torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
    with attnviz.patched(model, bidirectional=bidirectional):
        got = attnviz.capture_attention(model, **inputs)
    assert len(got) == len(expected) == 2
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == (2, 4, 8, 8)
        assert_close(mine, theirs)


def test_capture_with_norope_and_a_wrapper():
    config = attnviz.tiny_config()
    eager = LlamaForCausalLM(config).eval()
    model = LlamaForCausalLM(attnviz.tiny_config(attn_implementation="sdpa")).eval()
    model.load_state_dict(eager.state_dict())
    with attnviz.no_rope(eager), attnviz.bidirectional(eager), torch.no_grad():
        expected = eager(IDS, output_attentions=True).attentions
    with attnviz.no_rope(model), attnviz.bidirectional(model):
        got = attnviz.capture_attention(model, input_ids=IDS)
    for mine, theirs in zip(got, expected, strict=True):
        assert_close(mine, theirs)


@pytest.mark.parametrize("backend", ["sdpa", "flex_attention"])
@pytest.mark.parametrize("positions", ["default", "shifted"])
def test_capture_from_inputs_embeds_rotates_like_eager(backend, positions):
    # On sdpa and flex capture recomputes the weights itself, so it must rotate queries and keys
    # as the layer did. Positions that start at 7 give other rotations than 0, 1, 2, ...: a capture
    # that skipped RoPE, or used the wrong positions, would differ from eager's own weights.
    embeds = torch.randn(2, 6, 128, generator=torch.Generator().manual_seed(4))
    inputs = {"inputs_embeds": embeds}
    if positions == "shifted":
        inputs["position_ids"] = torch.arange(7, 13).expand(2, -1)
    eager = attnviz.tiny_model(seed=6)
    model = attnviz.tiny_model(seed=6, attn_implementation=backend)
    with torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
    got = attnviz.capture_attention(model, **inputs)
    assert len(got) == len(expected) == 2
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == (2, 4, 6, 6)
        assert_close(mine, theirs)


def test_model_outputs_backend_and_hooks_are_unchanged():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    with torch.no_grad():
        before = model(IDS).last_hidden_state
    attnviz.capture_attention(model, input_ids=IDS)
    with torch.no_grad():
        after = model(IDS).last_hidden_state
    assert torch.equal(before, after)
    assert model.config._attn_implementation == "sdpa"
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_training_mode_is_kept_and_dropout_not_applied(backend):
    # Dropout shows in every layer: on eager in the returned weights themselves, and on any backend
    # in the hidden states that reach the next layer. So every layer is compared, not only the first.
    eager = attnviz.tiny_model(seed=2)
    model = attnviz.tiny_model(seed=2, attn_implementation=backend, attention_dropout=0.5).train()
    with torch.no_grad():
        expected = eager(IDS, output_attentions=True).attentions
    got = attnviz.capture_attention(model, input_ids=IDS)
    assert model.training
    assert len(got) == len(expected) == 2
    for mine, theirs in zip(got, expected, strict=True):
        assert_close(mine, theirs)


def test_output_feeds_bertviz_head_view():
    from bertviz import head_view

    model = attnviz.tiny_model(attn_implementation="sdpa")
    attentions = attnviz.capture_attention(model, input_ids=IDS[:1])
    tokens = [f"t{i}" for i in range(8)]
    html = head_view(attentions, tokens, html_action="return")
    assert "t7" in html.data and "bertviz" in html.data


def test_refuses_other_models_unknown_backends_and_no_inputs():
    with pytest.raises(ValueError, match="GPT2Model"):
        gpt2 = GPT2Model(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0))
        attnviz.capture_attention(gpt2, input_ids=IDS)
    model = attnviz.tiny_model()
    with pytest.raises(ValueError, match="needs the model's inputs"):
        attnviz.capture_attention(model)
    model.config._attn_implementation = "my_kernel"
    with pytest.raises(ValueError, match="does not know how the 'my_kernel' attention backend masks"):
        attnviz.capture_attention(model, input_ids=IDS)


def test_one_layer_and_some_heads_only():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    full = attnviz.capture_attention(model, input_ids=IDS)
    part = attnviz.capture_attention(model, input_ids=IDS, layers=[1], heads=[3, 0])
    assert part[0] is None and part[1].shape == (2, 2, 8, 8)
    assert_close(part[1], full[1][:, [3, 0]])
    eager = attnviz.tiny_model()
    assert_close(attnviz.capture_attention(eager, input_ids=IDS, layers=[-1], heads=[2])[1], full[1][:, [2]])
    with pytest.raises(ValueError, match="indices of the model's 4 query heads"):
        attnviz.capture_attention(model, input_ids=IDS, heads=[4])
    with pytest.raises(ValueError, match=r"indices of the model's 2 layers \(0 to 1"):
        attnviz.capture_attention(model, input_ids=IDS, layers=[5])
