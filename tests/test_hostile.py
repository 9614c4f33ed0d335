"""Where real users go: copies, pickles, threads, shared configs, half precision, stacked patches,
caches and generate(), packed sequences, rope scaling, dtype changes, other libraries' wrappers,
and the mistakes that must give a clear error instead of a traceback or a silently wrong answer.

Every test here failed on attnviz before the fix it guards.
"""

import copy
import io
import pickle
import threading

import pytest
import torch
from torch.testing import assert_close
from transformers import LlamaForCausalLM, LlamaModel
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import attnviz
from attnviz import cli

IDS = torch.tensor([[5, 17, 42, 8, 5, 99, 23, 61]])


def _hidden(model, ids=IDS, **kwargs):
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False, **kwargs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


def _future_effect(model, ids=IDS):
    """How far the first position's output moves when only the last input token changes."""
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 200
    return (_hidden(model, ids)[0, 0] - _hidden(model, changed)[0, 0]).abs().max().item()


# -- copies and pickles -------------------------------------------------------------------------
def test_a_deepcopy_of_a_patched_model_is_an_independent_patched_model():
    model = attnviz.tiny_model()
    attnviz.bidirectional(model)
    clone = copy.deepcopy(model)
    assert _future_effect(clone) > 1e-3, "the copy must be bidirectional too"
    assert_close(_hidden(clone), _hidden(model), rtol=0, atol=0)

    # training the copy must not touch the original's weights or gradients
    clone.train()
    clone(input_ids=IDS, use_cache=False).last_hidden_state.sum().backward()
    assert all(p.grad is None for p in model.parameters()), "gradients flowed into the original"
    assert any(p.grad is not None for p in clone.parameters())
    with torch.no_grad():
        next(clone.parameters()).add_(1.0)
    assert not torch.equal(next(clone.parameters()), next(model.parameters()))

    attnviz.restore(clone)
    assert _future_effect(clone) == 0.0, "restore on the copy must make the copy causal"
    assert _future_effect(model) > 1e-3, "restoring the copy must leave the original patched"


def test_a_deepcopy_of_the_patch_object_carries_its_own_model():
    model = attnviz.tiny_model()
    patch = attnviz.no_rope(model)
    twin = copy.deepcopy(patch)
    assert twin.model is not model
    twin.restore()
    assert type(twin.model.rotary_emb).__name__ == "LlamaRotaryEmbedding"
    assert isinstance(model.rotary_emb, attnviz.NoRoPE), "the original must stay patched"


def test_a_patched_model_pickles_and_comes_back_patched():
    model = attnviz.tiny_model()
    attnviz.bidirectional(model)
    attnviz.no_rope(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert_close(_hidden(loaded), _hidden(model), rtol=0, atol=0)
    attnviz.restore(loaded)
    assert_close(_hidden(loaded), _hidden(attnviz.tiny_model()), rtol=0, atol=0)
    assert pickle.loads(pickle.dumps(model)) is not None


# -- the shared config is never written ---------------------------------------------------------
def test_threads_on_one_patched_model_leave_nothing_behind():
    config = attnviz.tiny_config()
    model = attnviz.tiny_model(config=config)
    before = _hidden(model)
    patch = attnviz.bidirectional(model)
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        for _ in range(5):
            _hidden(model)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert getattr(config, "is_causal", True) is True
    patch.restore()
    assert _future_effect(model) == 0.0
    assert_close(_hidden(model), before, rtol=0, atol=0)


def test_a_model_sharing_the_config_stays_causal_while_the_other_runs():
    config = attnviz.tiny_config()
    patched_model, bystander = attnviz.tiny_model(config=config), attnviz.tiny_model(config=config, seed=1)
    seen = []

    def run_bystander(module, args, kwargs, output):
        seen.append(_future_effect(bystander))  # runs while the patched forward is still on the stack

    handle = patched_model.layers[0].register_forward_hook(run_bystander, with_kwargs=True)
    with attnviz.bidirectional(patched_model):
        _hidden(patched_model)
    handle.remove()
    assert seen == [0.0], "a model sharing the config turned bidirectional inside the patched forward"


def test_a_model_sharing_the_config_stays_causal_under_threads():
    config = attnviz.tiny_config()
    patched_model, bystander = attnviz.tiny_model(config=config), attnviz.tiny_model(config=config, seed=1)
    effects, stop = [], threading.Event()
    attnviz.bidirectional(patched_model)

    def hammer():
        while not stop.is_set():
            _hidden(patched_model)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(20):
            effects.append(_future_effect(bystander))
    finally:
        stop.set()
        thread.join()
    assert max(effects) == 0.0


def test_set_attn_implementation_while_patched_is_kept_consistent():
    model = LlamaForCausalLM(attnviz.tiny_config()).eval()
    with attnviz.bidirectional(model):
        model.model.set_attn_implementation("sdpa")
        assert _future_effect(model) > 1e-3
        assert model.model.layers[0].self_attn.config._attn_implementation == "sdpa"
    assert model.model.config._attn_implementation == "sdpa"
    assert model.model.layers[0].self_attn.config is model.config


# -- half precision ----------------------------------------------------------------------------
HALF_MODELS = {
    "tiny": dict(),
    "smollm-shaped": dict(
        hidden_size=576, num_attention_heads=9, num_key_value_heads=3, head_dim=64, intermediate_size=1536
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seq_len", [8, 64])
@pytest.mark.parametrize("shape", list(HALF_MODELS))
def test_probe_verdicts_hold_in_half_precision(dtype, seq_len, shape):
    model = attnviz.tiny_model(attn_implementation="sdpa", **HALF_MODELS[shape]).to(dtype)
    plain = attnviz.probe_report(model, seq_len=seq_len)
    assert (plain.attends_to_future, plain.uses_positions) == (False, True), str(plain)
    with attnviz.no_rope(model):
        norope = attnviz.probe_report(model, seq_len=seq_len)
    assert (norope.attends_to_future, norope.uses_positions) == (False, True), str(norope)
    with attnviz.patched(model, bidirectional=True):
        both_ways = attnviz.probe_report(model, seq_len=seq_len)
    assert (both_ways.attends_to_future, both_ways.uses_positions) == (True, True), str(both_ways)
    with attnviz.patched(model, bidirectional=True, no_rope=True):
        free = attnviz.probe_report(model, seq_len=seq_len)
    assert (free.attends_to_future, free.uses_positions) == (True, False), str(free)


# -- stacked patches ---------------------------------------------------------------------------
@pytest.mark.parametrize("patch", [attnviz.bidirectional, attnviz.no_rope])
def test_two_patches_of_one_kind_restored_in_either_order(patch):
    for order in ("first-first", "last-first"):
        model = attnviz.tiny_model()
        before = _hidden(model)
        a, b = patch(model), patch(model)
        (a if order == "first-first" else b).restore()
        assert not torch.equal(_hidden(model), before), "one patch is still active"
        (b if order == "first-first" else a).restore()
        assert_close(_hidden(model), before, rtol=0, atol=0)


def test_a_wrapper_and_its_backbone_restored_out_of_order():
    wrapper = LlamaForCausalLM(attnviz.tiny_config()).eval()
    before = _hidden(wrapper)
    on_wrapper = attnviz.bidirectional(wrapper)
    on_backbone = attnviz.bidirectional(wrapper.model)
    rope_wrapper, rope_backbone = attnviz.no_rope(wrapper), attnviz.no_rope(wrapper.model)
    on_wrapper.restore()
    rope_wrapper.restore()
    on_backbone.restore()
    rope_backbone.restore()
    assert_close(_hidden(wrapper), before, rtol=0, atol=0)
    assert type(wrapper.model.rotary_emb).__name__ == "LlamaRotaryEmbedding"


def test_a_patch_object_used_twice_in_with_applies_both_times():
    model = attnviz.tiny_model()
    patch = attnviz.bidirectional(model)
    with patch:
        assert _future_effect(model) > 1e-3
    assert _future_effect(model) == 0.0
    with patch:
        assert _future_effect(model) > 1e-3, "the second `with` must re-apply the patch"
    assert _future_effect(model) == 0.0


def test_the_caller_cannot_switch_a_bidirectional_model_back_to_causal():
    model = attnviz.tiny_model()
    with attnviz.bidirectional(model):
        ids = IDS.clone()
        changed = ids.clone()
        changed[0, -1] = 3
        with torch.no_grad():
            first = model(input_ids=ids, is_causal=True, use_cache=False).last_hidden_state
            second = model(input_ids=changed, is_causal=True, use_cache=False).last_hidden_state
        assert (first[0, 0] - second[0, 0]).abs().max() > 1e-3


# -- caches, generate() ------------------------------------------------------------------------
def test_capture_refuses_a_cache_or_matches_eager():
    model = attnviz.tiny_model()
    with torch.no_grad():
        cache = model(input_ids=IDS[:, :5], use_cache=True).cache
    for name in ("cache", "past_key_values"):  # 5.24's name and the deprecated one
        with pytest.raises(ValueError, match="cache"):
            attnviz.capture_attention(model, input_ids=IDS[:, 5:], **{name: cache})


def test_a_bidirectional_model_refuses_to_decode_with_a_cache():
    model = LlamaForCausalLM(attnviz.tiny_config()).eval()
    with attnviz.bidirectional(model):
        with pytest.raises(ValueError, match="cache"):
            model.generate(IDS, max_new_tokens=3, do_sample=False, use_cache=True)
        with pytest.raises(ValueError, match="cache"):
            model(input_ids=IDS, use_cache=True)
        # without a cache every step re-reads the whole sequence: allowed, and consistent
        tokens = model.generate(IDS, max_new_tokens=3, do_sample=False, use_cache=False)
        assert tokens.shape == (1, IDS.shape[1] + 3)
    model.generate(IDS, max_new_tokens=2, do_sample=False)  # causal again: the cache is fine


# -- packed sequences --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["eager", "sdpa", "flex_attention"])
def test_packed_sequences_stay_apart_when_bidirectional(backend):
    model = attnviz.tiny_model(attn_implementation=backend)
    first, second = IDS[:, :4], IDS[:, 4:]
    packed_positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    with attnviz.bidirectional(model):
        packed = _hidden(model, IDS, position_ids=packed_positions)
        alone = torch.cat([_hidden(model, first), _hidden(model, second)], dim=1)
        weights = attnviz.capture_attention(model, input_ids=IDS, position_ids=packed_positions)
    assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert weights[0][0, :, 4:, :4].abs().max() == 0, "the second sequence attends to the first"


@pytest.mark.parametrize("feed", ["input_ids", "inputs_embeds"])
def test_packed_sequences_keep_their_padding_and_take_embeddings(feed):
    # Two sequences packed in one row, the first with a padding token at its start: the padding
    # stays invisible and the sequences stay apart, whether the model is fed ids or embeddings.
    model = attnviz.tiny_model(attn_implementation="sdpa")
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    padding = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1]])
    inputs = {"input_ids": IDS} if feed == "input_ids" else {"inputs_embeds": model.embed_tokens(IDS).detach()}
    with attnviz.bidirectional(model):
        weights = attnviz.capture_attention(model, **inputs, position_ids=positions, attention_mask=padding)
        with torch.no_grad():
            packed = model(**inputs, position_ids=positions, attention_mask=padding).last_hidden_state
            alone = model(input_ids=IDS[:, 4:]).last_hidden_state
    layer = weights[0][0]  # (heads, q_len, k_len)
    assert layer[:, 4:, :4].abs().max() == 0, "the second sequence attends to the first"
    assert layer[:, 1:, 0].abs().max() == 0, "a token attends to the padding"
    assert layer[:, 1:4, 1:4].min() > 0, "the first sequence attends both ways within itself"
    assert_close(packed[:, 4:], alone, rtol=1e-5, atol=1e-5)


def test_a_bidirectional_model_refuses_a_cache_passed_without_use_cache():
    model = attnviz.tiny_model()
    with torch.no_grad():
        cache = model(input_ids=IDS[:, :4], use_cache=True).past_key_values
    with attnviz.bidirectional(model):
        for name in ("cache", "past_key_values"):
            with pytest.raises(ValueError, match=rf"given a KV cache \({name}=\.\.\.\)"):
                model(input_ids=IDS[:, 4:], use_cache=False, **{name: cache})
        with torch.no_grad():
            out = model(input_ids=IDS)  # the config says use_cache=True: the patch turns it off
    assert model.config.use_cache is True and out.past_key_values is None


def test_the_book_subclass_is_bidirectional_when_called_positionally_and_packed():
    model = attnviz.LlamaBidirectionalModel(attnviz.tiny_config()).eval()
    assert model.config.is_causal is False
    changed = IDS.clone()
    changed[0, -1] = 3
    with torch.no_grad():
        first, second = model(IDS).last_hidden_state, model(changed).last_hidden_state  # ids by position
        assert (first[0, 0] - second[0, 0]).abs().max() > 1e-3
        packed = model(input_ids=IDS, position_ids=torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])).last_hidden_state
        alone = model(input_ids=IDS[:, 4:]).last_hidden_state
    assert_close(packed[:, 4:], alone, rtol=1e-5, atol=1e-5)


# -- NoRoPE keeps what is not position -----------------------------------------------------------
@pytest.mark.parametrize("rope_type", sorted(ROPE_INIT_FUNCTIONS))
def test_no_rope_keeps_the_attention_scaling_of_every_rope_type(rope_type):
    parameters = {"rope_type": rope_type, "rope_theta": 10000.0, "factor": 4.0}
    if rope_type == "llama3":
        parameters.update(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=128)
    if rope_type == "longrope":
        parameters.update(short_factor=[1.0] * 16, long_factor=[4.0] * 16, original_max_position_embeddings=128)
    if rope_type == "yarn":
        parameters.update(original_max_position_embeddings=128)
    if rope_type == "proportional":
        parameters.update(partial_rotary_factor=1.0)
    model = attnviz.tiny_model(rope_parameters=parameters)
    real_cos, _ = model.rotary_emb(torch.zeros(1, 4, 128), torch.zeros(1, 4, dtype=torch.long))  # angle 0
    with attnviz.no_rope(model):
        cos, sin = model.rotary_emb(torch.zeros(1, 4, 128), torch.arange(4)[None])
    assert_close(cos, real_cos, rtol=0, atol=0)
    assert torch.all(sin == 0)
    standalone_cos, _ = attnviz.NoRoPE(model.config)(torch.zeros(1, 4, 128), torch.arange(4)[None])
    assert_close(standalone_cos, real_cos, rtol=0, atol=0)


def test_no_rope_accepts_one_dimensional_position_ids():
    norope = attnviz.NoRoPE(attnviz.tiny_config())
    cos, sin = norope(torch.zeros(1, 5, 128), torch.arange(5))
    assert cos.shape == sin.shape == (1, 5, 32)


def test_a_bidirectional_norope_model_takes_one_dimensional_position_ids():
    # NoRoPE takes one row of positions without the batch dimension (LlamaRotaryEmbedding does not):
    # the packing check must let it through rather than read it as a batch
    model = attnviz.tiny_model()
    with attnviz.patched(model, bidirectional=True, no_rope=True):
        flat = _hidden(model, IDS, position_ids=torch.arange(8))
        batched = _hidden(model, IDS, position_ids=torch.arange(8)[None])
    assert_close(flat, batched, rtol=0, atol=0)


def test_restore_after_a_dtype_change_matches_a_never_patched_model():
    model, reference = attnviz.tiny_model(), attnviz.tiny_model()
    patch = attnviz.no_rope(model)
    model.to(torch.bfloat16)
    reference.to(torch.bfloat16)
    patch.restore()
    assert_close(_hidden(model), _hidden(reference), rtol=0, atol=0)


# -- other libraries' forward wrappers ---------------------------------------------------------
@pytest.mark.parametrize("order", ["hook-after-patch", "hook-before-patch"])
def test_patches_compose_with_accelerate_hooks(order):
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    model = attnviz.tiny_model()
    before = _hidden(model)
    if order == "hook-before-patch":
        add_hook_to_module(model, ModelHook())
    patch = attnviz.bidirectional(model)
    if order == "hook-after-patch":
        add_hook_to_module(model, ModelHook())
    assert _future_effect(model) > 1e-3
    patch.restore()
    assert _future_effect(model) == 0.0
    remove_hook_from_module(model)
    assert _future_effect(model) == 0.0, "removing accelerate's hook brought the patch back"
    assert_close(_hidden(model), before, rtol=0, atol=0)


def test_patches_compose_with_peft_lora():
    from peft import LoraConfig, get_peft_model

    wrapper = LlamaForCausalLM(attnviz.tiny_config()).eval()
    peft_model = get_peft_model(wrapper, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ValueError, match=r"base_model\.model"):
        attnviz.bidirectional(peft_model)
    with attnviz.bidirectional(peft_model.base_model.model):
        assert _future_effect(peft_model) > 1e-3
    assert _future_effect(peft_model) == 0.0


# -- clear errors ------------------------------------------------------------------------------
def test_capture_names_the_valid_layers():
    model = attnviz.tiny_model()
    with pytest.raises(ValueError, match=r"layers.*0.*1"):
        attnviz.capture_attention(model, input_ids=IDS, layers=[5])


def test_capture_estimates_its_memory_and_refuses_what_cannot_fit():
    model = attnviz.tiny_model(max_position_embeddings=1 << 20)
    ids = torch.zeros(1, 300_000, dtype=torch.long)  # 2 layers x 4 heads x 300k^2 float32: ~2.9 TB
    with pytest.raises(MemoryError, match=r"(?s)TB.*layers=.*heads="):
        attnviz.capture_attention(model, input_ids=ids)


def test_explorer_refuses_an_empty_input():
    model, tokenizer = attnviz.load_demo()
    with pytest.raises(ValueError, match="at least one token"):
        attnviz.AttentionExplorer(model, tokenizer, input_ids=torch.zeros(1, 0, dtype=torch.long))


def _cli(args, capsys):
    try:
        code = cli.main(args)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model"
    LlamaForCausalLM(attnviz.tiny_config()).save_pretrained(path)
    return path


def test_cli_corrupt_weights_are_one_line(saved, capsys):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file at all")
    code, err = _cli(["check", "--model", str(saved)], capsys)
    assert code == 2 and "--model" in err and len(err.strip().splitlines()) == 1, err


def test_cli_shape_mismatch_is_one_line(saved, capsys):
    config = (saved / "config.json").read_text()
    (saved / "config.json").write_text(config.replace('"hidden_size": 128', '"hidden_size": 256'))
    code, err = _cli(["check", "--model", str(saved)], capsys)
    assert code == 2 and "--model" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("out", ["/proc/attnviz.png", "{tmp}/fig.png"])
def test_cli_unwritable_out_is_one_line(out, tmp_path, capsys):
    (tmp_path / "fig.png").mkdir()  # a folder that looks like an image file name
    code, err = _cli(["render", "--out", out.replace("{tmp}", str(tmp_path))], capsys)
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1, err


def test_cli_honours_a_saved_bidirectional_model(tmp_path, capsys):
    path = tmp_path / "bidirectional"
    attnviz.LlamaBidirectionalModel(attnviz.tiny_config()).save_pretrained(path)
    reloaded = attnviz.LlamaBidirectionalModel.from_pretrained(path)
    assert isinstance(reloaded.rotary_emb, attnviz.NoRoPE) and _future_effect(reloaded) > 1e-3
    code = cli.main(["check", "--model", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and "attends to the future: YES" in out and "uses positions:        no" in out, out


def test_the_book_subclass_does_not_write_a_shared_config():
    config = attnviz.tiny_config()
    bidirectional = attnviz.LlamaBidirectionalModel(config).eval()
    bystander = LlamaModel(config).eval()
    seen = []
    handle = bidirectional.layers[0].register_forward_hook(lambda *a: seen.append(_future_effect(bystander)))
    _hidden(bidirectional)
    handle.remove()
    assert seen == [0.0]
