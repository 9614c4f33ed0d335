"""attnviz.bidirectional / no_rope / NoRoPE / LlamaBidirectionalModel on transformers itself."""

import re

import pytest
import torch
import transformers
from transformers import (
    GPT2Config,
    GPT2Model,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
    masking_utils,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
from transformers.models.llama import modeling_llama

import attnviz
import attnviz.patch

IDS = torch.tensor([[5, 17, 42, 8, 5, 99, 23, 61]])


def _out(model, ids=IDS, **kwargs):
    with torch.no_grad():
        out = model(ids, **kwargs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


def _future_effect(model):
    changed = IDS.clone()
    changed[0, -1] = 3
    return (_out(model)[0, 0] - _out(model, changed)[0, 0]).abs().max().item()


@pytest.mark.parametrize("patch", [attnviz.bidirectional, attnviz.no_rope])
def test_with_block_restores_bitwise(patch):
    model = attnviz.tiny_model()
    before = _out(model)
    with patch(model) as patched:
        assert patched is model
        assert not torch.equal(_out(model), before)
    assert torch.equal(_out(model), before)


@pytest.mark.parametrize("patch", [attnviz.bidirectional, attnviz.no_rope])
def test_restored_after_an_exception(patch):
    model = attnviz.tiny_model()
    before = _out(model)
    with pytest.raises(RuntimeError, match="boom"):
        with patch(model):
            raise RuntimeError("boom")
    assert torch.equal(_out(model), before)
    assert "forward" not in vars(model)
    assert type(model.rotary_emb) is modeling_llama.LlamaRotaryEmbedding


def test_enter_for_good_then_restore():
    model = attnviz.tiny_model()
    before = _out(model)
    patch = attnviz.bidirectional(model)
    assert _future_effect(model) > 1e-3
    assert "active" in repr(patch)
    patch.restore()
    patch.restore()  # a second restore does nothing
    assert _future_effect(model) == 0.0
    assert torch.equal(_out(model), before)


def test_patches_nest_and_unwind():
    model = attnviz.tiny_model()
    before = _out(model)
    with attnviz.bidirectional(model), attnviz.no_rope(model), attnviz.bidirectional(model):
        assert isinstance(model.rotary_emb, attnviz.NoRoPE)
    assert torch.equal(_out(model), before)


def test_other_instances_sharing_the_config_do_not_change():
    config = attnviz.tiny_config()
    a = attnviz.tiny_model("llama", config, seed=0)
    b = attnviz.tiny_model("llama", config, seed=0)
    assert a.config is b.config
    b_before = _out(b)
    config_before = dict(vars(config))
    with attnviz.bidirectional(a), attnviz.no_rope(a):
        assert _future_effect(a) > 1e-3
        assert torch.equal(_out(b), b_before)
        assert _future_effect(b) == 0.0
        assert type(b.rotary_emb) is modeling_llama.LlamaRotaryEmbedding
        assert dict(vars(config)) == config_before, "the shared config was written to"


def _snapshot():
    owners = [
        modeling_llama,
        masking_utils,
        transformers,
        LlamaModel,
        modeling_llama.LlamaAttention,
        modeling_llama.LlamaRotaryEmbedding,
        modeling_llama.LlamaDecoderLayer,
    ]
    snap = {(repr(o), k): id(v) for o in owners for k, v in vars(o).items()}
    snap["attention"] = tuple(sorted((k, id(v)) for k, v in AttentionInterface._global_mapping.items()))
    snap["attention_local"] = tuple(sorted((k, id(v)) for k, v in ALL_ATTENTION_FUNCTIONS._local_mapping.items()))
    return snap


def test_nothing_in_transformers_is_reassigned():
    model = LlamaForCausalLM(attnviz.tiny_config())
    before = _snapshot()
    with attnviz.bidirectional(model), attnviz.no_rope(model):
        assert _snapshot() == before
        attnviz.capture_attention(model, input_ids=IDS)
        attnviz.probe_report(model)
        assert _snapshot() == before
    assert _snapshot() == before


@pytest.mark.parametrize("wrapper", [LlamaForCausalLM, LlamaForSequenceClassification])
def test_wrappers_are_accepted(wrapper):
    config = attnviz.tiny_config(pad_token_id=0)
    model = wrapper(config).eval()
    before = _out(model)
    with attnviz.bidirectional(model), attnviz.no_rope(model):
        assert attnviz.attends_to_future(model)
        assert not attnviz.uses_positions(model)
        assert isinstance(model.model.rotary_emb, attnviz.NoRoPE)
    assert torch.equal(_out(model), before)


@pytest.mark.parametrize("patch", [attnviz.bidirectional, attnviz.no_rope, attnviz.probe_report, attnviz.find_backbone])
def test_other_models_are_refused_by_name(patch):
    gpt2 = GPT2Model(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0))
    families = r"\(Llama, Mistral, Qwen2, Qwen3\); got GPT2Model\. Supported backbones: LlamaModel, MistralModel"
    with pytest.raises(ValueError, match=families):
        patch(gpt2)
    with pytest.raises(ValueError, match=r"got Linear"):
        patch(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norope_is_a_drop_in_for_llama_rotary_embedding(dtype):
    model = attnviz.tiny_model()
    x = torch.zeros(3, 5, 128, dtype=dtype)
    for position_ids in (torch.arange(5)[None], torch.arange(15).view(3, 5)):
        cos, sin = model.rotary_emb(x, position_ids)
        my_cos, my_sin = attnviz.NoRoPE(model.config)(x, position_ids)
        assert (my_cos.shape, my_cos.dtype, my_cos.device) == (cos.shape, cos.dtype, cos.device)
        assert (my_sin.shape, my_sin.dtype) == (sin.shape, sin.dtype)
        assert torch.all(my_cos == 1) and torch.all(my_sin == 0)
    q = torch.randn(1, 4, 5, 32)
    assert torch.equal(modeling_llama.apply_rotary_pos_emb(q, q, my_cos[:1], my_sin[:1])[0], q)
    assert attnviz.NoRoPE(head_dim=16).head_dim == 16
    with pytest.raises(ValueError, match="config or head_dim"):
        attnviz.NoRoPE()


def test_bidirectional_sdpa_without_padding_builds_no_mask():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    masks = []
    hook = model.layers[0].self_attn.register_forward_pre_hook(
        lambda m, a, kw: masks.append(kw["attention_mask"]), with_kwargs=True
    )
    with attnviz.bidirectional(model):
        _out(model)
        _out(model, attention_mask=torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1]]))
    hook.remove()
    assert masks[0] is None, "a (seq x seq) mask was built where sdpa's is_causal=False would do"
    assert masks[1].shape == (1, 1, 8, 8) and masks[1].dtype == torch.bool


def test_llama_bidirectional_model_has_no_dead_override():
    config = attnviz.tiny_config()
    model = attnviz.LlamaBidirectionalModel(config).eval()
    assert not hasattr(LlamaModel, "_update_causal_mask"), "transformers brought _update_causal_mask back"
    assert "_update_causal_mask" not in vars(attnviz.LlamaBidirectionalModel)
    assert isinstance(model.rotary_emb, attnviz.NoRoPE)
    embeds = torch.randn(2, 6, 128)
    assert model(inputs_embeds=embeds).last_hidden_state.shape == (2, 6, 128)


@pytest.mark.parametrize("old", ["4.52.4", "4.57.6", "5.1.0"])
def test_refuses_transformers_that_would_stay_causal(monkeypatch, old):
    model = attnviz.tiny_model()
    before = _out(model)
    monkeypatch.setattr(attnviz.patch, "_installed_transformers", lambda: old)
    with pytest.raises(RuntimeError, match=rf"needs transformers >= 5\.2\.0.*this is transformers {re.escape(old)}"):
        attnviz.bidirectional(model)
    with pytest.raises(RuntimeError, match="needs transformers >= 5.2.0"):
        attnviz.LlamaBidirectionalModel(model.config)
    assert "forward" not in vars(model)
    assert torch.equal(_out(model), before)


def test_state_patches_behave_as_published_on_the_pinned_version():
    import warnings

    from attnviz.state import SeedBidirectionalModel, seed_backbone, state_later_patch

    seed = seed_backbone(attnviz.tiny_config())
    assert not seed.embed_tokens.weight.requires_grad and torch.all(seed.embed_tokens.weight == 0)
    SeedBidirectionalModel.update_causal_mask_calls = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = attnviz.probe_report(seed)
    assert report.attends_to_future and not report.uses_positions
    assert SeedBidirectionalModel.update_causal_mask_calls == 0
    assert any("past_key_values" in str(w.message) for w in caught), "the seed passes past_key_values"

    later = state_later_patch(attnviz.tiny_model(attn_implementation="sdpa"))
    report = attnviz.probe_report(later)
    assert report.attends_to_future and not report.uses_positions


# -- the small print: what the patches record and show ------------------------------------------
def test_rope_attention_scaling_without_rope_fields_is_plain_rope():
    from types import SimpleNamespace

    from attnviz.patch import rope_attention_scaling

    assert rope_attention_scaling(SimpleNamespace()) == 1.0  # a config with no rope_parameters
    assert rope_attention_scaling(SimpleNamespace(rope_parameters={"rope_theta": 10000.0})) == 1.0
    yarn = attnviz.tiny_config(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0})
    assert rope_attention_scaling(yarn) > 1.0


def test_norope_shows_its_cos_and_reads_the_rotary_module_it_replaced():
    assert attnviz.NoRoPE(head_dim=32).attention_scaling == 1.0
    assert repr(attnviz.NoRoPE(head_dim=32, attention_scaling=1.5)) == "NoRoPE(head_dim=32, cos=1.5, sin=0)"
    model = attnviz.tiny_model()
    norope = attnviz.NoRoPE.around(model.rotary_emb)
    model.rotary_emb.attention_scaling = 1.25
    assert "head_dim=32, cos=1.25, sin=0" in repr(norope)


def test_active_patches_and_the_patch_repr():
    model = LlamaForCausalLM(attnviz.tiny_config())
    assert attnviz.patch.active_patches(model) == []
    patch = attnviz.bidirectional(model)
    assert attnviz.patch.active_patches(model) == [patch]
    assert repr(patch) == "<attnviz.bidirectional on LlamaForCausalLM: active>"
    patch.restore()
    assert patch.active is False and repr(patch) == "<attnviz.bidirectional on LlamaForCausalLM: restored>"
    assert attnviz.patch.active_patches(model) == []


def test_restore_leaves_no_hook_behind_in_either_of_torch_s_tables():
    model = attnviz.tiny_model()
    with attnviz.bidirectional(model):
        assert len(model._forward_pre_hooks) == len(model._forward_pre_hooks_with_kwargs) == 1
    assert not model._forward_pre_hooks and not model._forward_pre_hooks_with_kwargs


def test_a_pre_hook_registered_earlier_sees_the_bidirectional_call():
    # The patch's hook goes first, so hooks other libraries put on the backbone before it (accelerate
    # moves the arguments to the device) see the call as the model will run it.
    model = attnviz.tiny_model()
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    with attnviz.bidirectional(model), torch.no_grad():
        model(input_ids=IDS)
    assert seen[0]["is_causal"] is False and seen[0]["use_cache"] is False


def test_a_copy_of_the_backbone_alone_leaves_the_wrapper_behind():
    import copy

    wrapper = LlamaForCausalLM(attnviz.tiny_config())
    attnviz.bidirectional(wrapper)
    backbone = copy.deepcopy(wrapper.model)
    (patch,) = attnviz.patch.active_patches(backbone)
    assert patch.model is backbone and patch.backbone is backbone
    whole = copy.deepcopy(wrapper)
    (patch,) = attnviz.patch.active_patches(whole)
    assert patch.model is whole and patch.backbone is whole.model
    # pickled with its backbone, a patch made through the wrapper does not pull the wrapper along
    import io

    buffer = io.BytesIO()
    torch.save(wrapper.model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    (patch,) = attnviz.patch.active_patches(loaded)
    assert patch.model is loaded and patch.backbone is loaded


def test_transformers_5_2_0_itself_is_accepted(monkeypatch):
    monkeypatch.setattr(attnviz.patch, "_installed_transformers", lambda: "5.2.0")
    with attnviz.bidirectional(attnviz.tiny_model()):
        pass


def test_no_rope_warns_that_a_windowed_model_still_uses_positions():
    model = attnviz.tiny_model("mistral", sliding_window=4)
    with pytest.warns(attnviz.PositionWarning, match=r"sliding-window attention in layers \[0, 1\]"):
        patch = attnviz.no_rope(model)
    patch.restore()


def test_position_ids_that_are_not_2d_are_left_to_transformers():
    """Only (batch, seq) position_ids can say that sequences are packed. A NoRoPE model ignores
    positions, so 1D position_ids run there as they would without the patch's packing check."""
    model = attnviz.tiny_model(attn_implementation="sdpa")
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(0))
    with attnviz.bidirectional(model), attnviz.no_rope(model), torch.no_grad():
        given = model(input_ids=ids, position_ids=torch.arange(6)).last_hidden_state
        default = model(input_ids=ids).last_hidden_state
    assert torch.equal(given, default)
