"""capture_attention returns eager's weights whatever the backend, and leaves the model as it was."""

import io
import math
import os

import pytest
import torch
from torch.testing import assert_close
from transformers import GPT2Config, GPT2Model, LlamaForCausalLM

import attnviz
from attnviz import capture

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


def test_layer_and_head_indices_at_both_ends():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    full = attnviz.capture_attention(model, input_ids=IDS)
    first = attnviz.capture_attention(model, input_ids=IDS, layers=[-2], heads=[-4])
    assert first[1] is None
    assert_close(first[0], full[0][:, [0]])
    assert attnviz.capture_attention(model, input_ids=IDS, layers=[]) == (None, None)
    for bad in ([2], [-3]):
        with pytest.raises(ValueError, match="indices of the model's 2 layers"):
            attnviz.capture_attention(model, input_ids=IDS, layers=bad)
    for bad in ([4], [-5], []):
        with pytest.raises(ValueError, match="indices of the model's 4 query heads"):
            attnviz.capture_attention(model, input_ids=IDS, heads=bad)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("layers", [None, [0]], ids=["all-layers", "layer-0"])
def test_each_layer_projects_once_and_later_layers_never_run(backend, layers):
    # capture runs the model once: it takes eager's own weights, or the projections each layer
    # computed, rather than running q_proj and k_proj again; and it stops after the last layer asked for
    model = attnviz.tiny_model(attn_implementation=backend)
    calls = []
    for index, layer in enumerate(model.layers):
        for name in ("q_proj", "k_proj"):
            getattr(layer.self_attn, name).register_forward_hook(lambda *_, key=(index, name): calls.append(key))
    attnviz.capture_attention(model, input_ids=IDS, layers=layers)
    ran = range(2) if layers is None else layers
    assert sorted(calls) == sorted((index, name) for index in ran for name in ("q_proj", "k_proj"))


def test_a_layer_that_never_runs_is_an_error_not_a_missing_tensor():
    # a model that skips a layer (early exit, layer dropping) cannot give that layer's weights
    model = attnviz.tiny_model(attn_implementation="sdpa")
    model.layers[1].forward = lambda hidden_states, *args, **kwargs: hidden_states
    with pytest.raises(RuntimeError, match=r"layers \[1\] were not run"):
        attnviz.capture_attention(model, input_ids=IDS)
    assert attnviz.capture_attention(model, input_ids=IDS, layers=[0])[0].shape == (2, 4, 8, 8)


def test_a_kv_cache_is_refused_under_either_name():
    from transformers import DynamicCache

    model = attnviz.tiny_model(attn_implementation="sdpa")
    for name in ("cache", "past_key_values"):
        with pytest.raises(ValueError, match=rf"was given a KV cache \({name}=\.\.\.\)"):
            attnviz.capture_attention(model, input_ids=IDS, **{name: DynamicCache(config=model.config)})
    with pytest.raises(ValueError, match="input_ids or inputs_embeds"):  # transformers' own message
        attnviz.capture_attention(model, attention_mask=PADDED)


def test_module_is_causal_false_is_the_mask_sdpa_applies():
    # with no padding sdpa gets no mask, and the kernel's is_causal comes from the module: a model
    # whose attention modules say is_causal=False attends both ways, and capture must show that
    model = attnviz.tiny_model(seed=3, attn_implementation="sdpa")
    for layer in model.layers:
        layer.self_attn.is_causal = False
    got = attnviz.capture_attention(model, input_ids=IDS)
    eager = attnviz.tiny_model(seed=3)
    with attnviz.bidirectional(eager), torch.no_grad():
        expected = eager(IDS, output_attentions=True)
        assert_close(model(IDS).last_hidden_state, expected.last_hidden_state)  # sdpa did attend both ways
    for mine, theirs in zip(got, expected.attentions, strict=True):
        assert_close(mine, theirs)


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_the_shortest_inputs(seq):
    # one query needs no causal mask; from two on, the first query must not see the second
    eager = attnviz.tiny_model(seed=1)
    model = attnviz.tiny_model(seed=1, attn_implementation="sdpa")
    with torch.no_grad():
        expected = eager(IDS[:, :seq], output_attentions=True).attentions
    for mine, theirs in zip(attnviz.capture_attention(model, input_ids=IDS[:, :seq]), expected, strict=True):
        assert_close(mine, theirs)


def test_half_precision_weights_are_returned_in_the_model_dtype():
    eager = attnviz.tiny_model(seed=5).to(torch.bfloat16)
    model = attnviz.tiny_model(seed=5, attn_implementation="sdpa").to(torch.bfloat16)
    with torch.no_grad():
        expected = eager(IDS, attention_mask=PADDED, output_attentions=True).attentions
    got = attnviz.capture_attention(model, input_ids=IDS, attention_mask=PADDED)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == torch.bfloat16
        assert_close(mine, theirs, atol=2e-2, rtol=2e-2)


def _must_not_run(model):
    def refuse(module, args, kwargs):
        raise AssertionError("the model was run: the capture should have been refused before")

    model.register_forward_pre_hook(refuse, with_kwargs=True)
    return model


def test_a_capture_too_large_for_memory_is_refused_before_running():
    # inputs on the meta device have a shape and no data; the model fails the test if it is run
    model = _must_not_run(attnviz.tiny_model(attn_implementation="sdpa"))
    seq = 100_000
    blocks = 2 * capture.BLOCK_ELEMENTS * 4  # one block of float32 scores and its softmax
    ids = torch.zeros(1, seq, dtype=torch.long, device="meta")
    with pytest.raises(MemoryError) as refused:
        attnviz.capture_attention(model, input_ids=ids)
    message = str(refused.value)
    needed = 2 * 4 * seq * seq * 4 + blocks
    assert f"need about {needed / 2**30:.1f} GB for 2 layer(s) x 4 head(s) x 1 x {seq} x {seq} weights" in message
    assert f"one layer and one head at {seq} tokens is {seq * seq * 4 / 2**30:.1f} GB" in message
    assert "attnviz.attention_map(model, layer=..., head=..., **inputs)" in message
    embeds = torch.zeros(2, seq, 128, device="meta")
    with pytest.raises(MemoryError) as refused:
        attnviz.capture_attention(model, inputs_embeds=embeds, layers=[1], heads=[0, 1])
    needed = 1 * 2 * 2 * seq * seq * 4 + blocks
    assert f"need about {needed / 2**30:.1f} GB for 1 layer(s) x 2 head(s) x 2 x {seq} x {seq} weights" in str(
        refused.value
    )


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads the free memory Linux reports")
def test_a_capture_that_would_take_most_of_the_free_memory_is_refused():
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    model = _must_not_run(attnviz.tiny_model(attn_implementation="sdpa"))
    # the weights alone would take 90% of what is free: more than the 80% capture allows itself
    seq = math.isqrt(int(0.9 * available) // (2 * 4 * 4))
    with pytest.raises(MemoryError, match=r"this machine has \d+\.\d [KMGT]?B free"):
        attnviz.capture_attention(model, input_ids=torch.zeros(1, seq, dtype=torch.long, device="meta"))


def test_sizes_in_messages_are_human_readable():
    human = capture._human
    assert [human(0), human(1023), human(1024), human(1536)] == ["0.0 B", "1023.0 B", "1.0 KB", "1.5 KB"]
    assert [human(5 * 2**20), human(3 * 2**30), human(2**40)] == ["5.0 MB", "3.0 GB", "1.0 TB"]
    assert human(5000 * 2**40) == "5000.0 TB"  # no unit above TB


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_the_flash_form_of_the_mask_gives_eager_weights(padded, bidirectional):
    # flash has no CPU kernel, but what it is given can be: no 4D mask, the 2D padding mask (or
    # none), is_causal, and the sliding window as the kernel's own argument. Recomputed from that,
    # the weights must be eager's, window and padding included (a padding row that may see nothing
    # is spread over every key, as eager's additive mask spreads it).
    window = 3
    # transformers 5.24's flash kernel gets window_size=(window - 1, window - 1): |i - j| < window.
    # Causal, that is eager's window; bidirectional, eager allows |i - j| <= window, one key more
    # each side, so the flash pattern is eager's with a window one smaller (compared on layer 0,
    # whose inputs do not depend on the window).
    eager = attnviz.tiny_model("mistral", seed=4, sliding_window=window - 1 if bidirectional else window)
    model = attnviz.tiny_model("mistral", seed=4, attn_implementation="sdpa", sliding_window=window)
    inputs = {"input_ids": IDS, **({"attention_mask": PADDED} if padded else {})}
    with attnviz.patched(eager, bidirectional=bidirectional), torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
    modules = [layer.self_attn for layer in model.layers]
    with attnviz.patched(model, bidirectional=bidirectional):
        recorded = capture.run_layers(model, modules, {0, 1}, inputs, projections=True)
    for index in (0,) if bidirectional else (0, 1):
        flash_inputs = {**recorded[index], "attention_mask": PADDED if padded else None}
        weights = torch.zeros_like(expected[index])
        # three rows at a time, as attention_map streams them: each block reaches only its own keys
        for block in capture.attention_rows(modules[index], flash_inputs, "flash_attention_2", rows=3):
            key_stop = block.key_start + block.weights.shape[-1]
            weights[:, :, block.start : block.stop, block.key_start : key_stop] = block.weights
        assert_close(weights, expected[index])


@pytest.mark.parametrize("backend", ["flash_attention_2", "flash_attention_3", "flash_attention_4"])
def test_flash_backends_are_known(backend):
    # no flash kernel runs on a CPU, but capture knows how flash masks (test above), so it accepts
    # such a model; only a backend it does not know is refused
    model = attnviz.tiny_model()
    model.config._attn_implementation = backend
    backbone, found, modules = capture.check_call(model, {"input_ids": IDS}, "capture_attention")
    assert backbone is model and found == backend and modules == [layer.self_attn for layer in model.layers]


def test_free_memory_is_read_from_the_device_the_model_is_on(monkeypatch):
    # on a GPU, the memory free on that GPU (mem_get_info gives free and total); elsewhere, what
    # Linux reports as available (in kB), or None when it cannot be read
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: asked.append(device) or (3 * 2**30, 8 * 2**30))
    assert capture._available_bytes(torch.device("cuda", 1)) == 3 * 2**30
    assert asked == [torch.device("cuda", 1)]
    meminfo = "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:    6000 kB\n"

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/meminfo"
        return io.StringIO(meminfo)

    monkeypatch.setattr(capture, "open", fake_open, raising=False)
    assert capture._available_bytes(torch.device("cpu")) == 6000 * 1024
    assert asked == [torch.device("cuda", 1)], "the CPU's free memory is not the GPU's"

    def no_proc(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(capture, "open", no_proc, raising=False)
    assert capture._available_bytes(torch.device("cpu")) is None


def test_a_capture_may_take_80_percent_of_the_free_memory_and_no_more(monkeypatch):
    # 2 layers x 4 heads x batch 2 x 8 x 8 float32 weights, plus one block of scores and its softmax
    needed = 2 * 4 * 2 * 8 * 8 * 4 + 2 * capture.BLOCK_ELEMENTS * 4
    model = attnviz.tiny_model(attn_implementation="sdpa")
    monkeypatch.setattr(capture, "_available_bytes", lambda device: needed // 4 * 5)  # needed is exactly 80%
    assert [w.shape for w in attnviz.capture_attention(model, input_ids=IDS)] == [(2, 4, 8, 8)] * 2
    monkeypatch.setattr(capture, "_available_bytes", lambda device: needed // 4 * 5 - 5)  # 4 bytes short
    with pytest.raises(MemoryError, match="capture_attention would need about"):
        attnviz.capture_attention(_must_not_run(model), input_ids=IDS)


def test_errors_name_the_function_called():
    model = attnviz.tiny_model()
    with pytest.raises(ValueError, match=r"^capture_attention needs .* capture_attention\(model, input_ids=ids\)"):
        attnviz.capture_attention(model)
    with pytest.raises(ValueError, match=r"^capture_attention was given a KV cache"):
        attnviz.capture_attention(model, input_ids=IDS, past_key_values=object())


def _assemble(blocks, shape):
    weights = torch.zeros(shape)
    for block in blocks:
        key_stop = block.key_start + block.weights.shape[-1]
        weights[:, :, block.start : block.stop, block.key_start : key_stop] = block.weights
    return weights


def test_capture_in_many_small_blocks_of_rows_gives_the_same_weights(monkeypatch):
    # long inputs are recomputed a block of rows at a time; so are short ones when blocks are small:
    # 3 rows a block (2 x 4 heads x 8 keys a row), each block reaching only the keys of its window
    eager = attnviz.tiny_model("mistral", seed=4, sliding_window=3)
    model = attnviz.tiny_model("mistral", seed=4, attn_implementation="sdpa", sliding_window=3)
    with torch.no_grad():
        expected = eager(IDS, attention_mask=PADDED, output_attentions=True).attentions
    monkeypatch.setattr(capture, "BLOCK_ELEMENTS", 2 * 4 * 8 * 3)
    assert capture.block_rows(2 * 4, 8) == 3
    got = attnviz.capture_attention(model, input_ids=IDS, attention_mask=PADDED)
    for mine, theirs in zip(got, expected, strict=True):
        assert_close(mine, theirs)


def test_a_row_larger_than_a_block_goes_alone(monkeypatch):
    # one row of scores (2 x 4 heads x 8 keys) is more than a block may hold: one row at a time then
    model = attnviz.tiny_model(attn_implementation="sdpa")
    modules = [layer.self_attn for layer in model.layers]
    recorded = capture.run_layers(model, modules, {0}, {"input_ids": IDS}, projections=True)[0]
    monkeypatch.setattr(capture, "BLOCK_ELEMENTS", 2 * 4 * 8 - 1)
    blocks = list(capture.attention_rows(modules[0], recorded, "sdpa"))
    assert [(block.start, block.stop) for block in blocks] == [(i, i + 1) for i in range(8)]


# the mask forms of attention_rows, recorded on sdpa: (family, window, backend whose form is used, padded,
# bidirectional); sdpa's form is a 4D boolean mask, flash's no 4D mask but the 2D padding mask
FORMS = [
    ("llama", None, "flash_attention_2", True, False),
    ("llama", None, "flash_attention_2", True, True),
    ("mistral", 3, "flash_attention_2", True, False),
    ("mistral", 3, "flash_attention_2", False, False),
    ("mistral", 3, "flash_attention_2", True, True),
    ("mistral", 3, "sdpa", True, False),
    ("mistral", 3, "sdpa", False, True),
]


@pytest.mark.parametrize("family, window, form, padded, bidirectional", FORMS)
def test_each_block_of_rows_reaches_exactly_the_keys_its_rows_may_see(family, window, form, padded, bidirectional):
    # what attention_map relies on to stream: a block computes only the keys some of its rows give
    # weight to (in eager's own weights), unless a row may see nothing (then eager spreads it over all)
    fields = {"sliding_window": window} if window else {}
    # flash's bidirectional window is eager's one smaller (test_the_flash_form_of_the_mask_gives_eager_weights)
    narrower = {"sliding_window": window - 1} if window and bidirectional and form.startswith("flash") else fields
    eager = attnviz.tiny_model(family, seed=4, **narrower)
    model = attnviz.tiny_model(family, seed=4, attn_implementation="sdpa", **fields)
    inputs = {"input_ids": IDS, **({"attention_mask": PADDED} if padded else {})}
    with attnviz.patched(eager, bidirectional=bidirectional), torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions[0]
    module = model.layers[0].self_attn
    with attnviz.patched(model, bidirectional=bidirectional):
        recorded = capture.run_layers(model, [module], {0}, inputs, projections=True)[0]
    if form.startswith("flash"):
        recorded["attention_mask"] = PADDED if padded else None
    blocks = list(capture.attention_rows(module, recorded, form, rows=3))
    assert [(block.start, block.stop) for block in blocks] == [(0, 3), (3, 6), (6, 8)]
    for block in blocks:
        seen = expected[:, :, block.start : block.stop].ne(0).flatten(0, -2).any(0).nonzero()
        assert (block.key_start, block.key_start + block.weights.shape[-1]) == (int(seen[0]), int(seen[-1]) + 1)
    assert_close(_assemble(blocks, expected.shape), expected)
    # a caller may widen each block's keys (attention_map: to whole blocks of its map); same weights
    widened = list(capture.attention_rows(module, recorded, form, rows=3, widen=lambda start, stop: (0, 8)))
    assert all(block.key_start == 0 and block.weights.shape[-1] == 8 for block in widened)
    assert_close(_assemble(widened, expected.shape), expected)


@pytest.mark.parametrize("rows_of_the_mask", [8, 1], ids=["a-row-per-query", "one-row-for-all"])
def test_an_additive_float_mask_is_added_as_eager_adds_it(rows_of_the_mask):
    # a 4D float attention_mask reaches eager as is and is added to the scores: any values, and
    # a (batch, 1, 1, keys) mask holds for every query
    eager = attnviz.tiny_model(seed=3)
    bias = torch.randn(1, 1, rows_of_the_mask, 8, generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": IDS[:1], "attention_mask": bias}
    with torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions[0]
    module = eager.layers[0].self_attn
    recorded = capture.run_layers(eager, [module], {0}, inputs, projections=True)[0]
    assert_close(_assemble(capture.attention_rows(module, recorded, "eager", rows=3), expected.shape), expected)


def test_recomputed_weights_are_float32_for_a_half_precision_model():
    # softmax in float32, as eager computes it, whatever the model's dtype: rows sum to 1 to float32 precision
    model = attnviz.tiny_model(seed=5, attn_implementation="sdpa").to(torch.bfloat16)
    module = model.layers[0].self_attn
    recorded = capture.run_layers(model, [module], {0}, {"input_ids": IDS}, projections=True)[0]
    for block in capture.attention_rows(module, recorded, "sdpa", rows=3):
        assert block.weights.dtype == torch.float32
        assert_close(block.weights.sum(-1), torch.ones(block.weights.shape[:-1]), rtol=0, atol=1e-6)


def test_flex_without_a_mask_attends_to_every_key():
    # flex_attention given no BlockMask masks nothing: the weights recomputed from that form, times
    # the values, must be the output the flex kernel itself computed from the same inputs
    from attnviz.reference import repeat_kv

    sdpa = attnviz.tiny_model(seed=2, attn_implementation="sdpa")  # the same weights, recorded without flex
    recorded = capture.run_layers(sdpa, [sdpa.layers[0].self_attn], {0}, {"input_ids": IDS}, projections=True)[0]
    recorded["attention_mask"] = None
    module = attnviz.tiny_model(seed=2, attn_implementation="flex_attention").layers[0].self_attn
    hidden_states = recorded["hidden_states"]
    arguments = {k: v for k, v in recorded.items() if k not in ("q_proj", "k_proj")}
    with torch.no_grad():
        output = module(**arguments)[0]
        weights = _assemble(capture.attention_rows(module, recorded, "flex_attention", rows=3), (2, 4, 8, 8))
        assert bool((weights > 0).all()), "no key was masked"
        values = module.v_proj(hidden_states).view(2, 8, -1, module.head_dim).transpose(1, 2)
        attended = weights @ repeat_kv(values, module.num_key_value_groups)
        expected = module.o_proj(attended.transpose(1, 2).reshape(2, 8, -1))
    assert_close(output, expected)


def test_a_second_output_that_is_not_weights_is_not_taken_for_them():
    # on a GPU, transformers' flex attention returns its log-sum-exp, (batch, heads, seq), where eager
    # returns the weights: only eager's second output is weights, the others are recomputed
    eager = attnviz.tiny_model(seed=3)
    model = attnviz.tiny_model(seed=3, attn_implementation="flex_attention")
    with torch.no_grad():
        expected = eager(IDS, output_attentions=True).attentions
    for layer in model.layers:
        layer.self_attn.register_forward_hook(lambda module, args, output: (output[0], torch.zeros(2, 4, 8)))
    got = attnviz.capture_attention(model, input_ids=IDS)
    for mine, theirs in zip(got, expected, strict=True):
        assert_close(mine, theirs)


def _dense(mask, rows, k_len):
    """A RowMask as a (rows, k_len) boolean: True where the row may attend (every batch row alike here)."""
    dense = torch.zeros(rows, k_len, dtype=torch.bool)
    dense[:, mask.key_start : mask.key_stop] = True
    if mask.allowed is not None:
        dense[:, mask.allowed_start : mask.key_stop] = mask.allowed[0, 0]
    return dense


@pytest.mark.parametrize("family, window, backend", [("llama", None, "sdpa"), ("mistral", 3, "flash_attention_2")])
def test_fewer_queries_than_keys_are_the_last_positions(family, window, backend):
    # MaskRows numbers q_len queries as the last q_len of the k_len positions (as after a prompt):
    # the masks of queries 0:3 of 3 over 8 keys are those of queries 5:8 of 8 over the same keys
    module = attnviz.tiny_model(family, **({"sliding_window": window} if window else {})).layers[0].self_attn
    inputs = {"attention_mask": None}
    last = capture.MaskRows(module, inputs, backend, 1, 3, 8, torch.device("cpu"))
    whole = capture.MaskRows(module, inputs, backend, 1, 8, 8, torch.device("cpu"))
    for start, stop in [(0, 3), (1, 2), (2, 3)]:
        mine, theirs = last.rows(start, stop), whole.rows(start + 5, stop + 5)
        assert (mine.key_start, mine.allowed_start, mine.key_stop) == (
            theirs.key_start,
            theirs.allowed_start,
            theirs.key_stop,
        )
        assert torch.equal(_dense(mine, stop - start, 8), _dense(theirs, stop - start, 8))
    assert _dense(last.rows(0, 3), 3, 8).tolist()[0] == [
        j <= 5 and (window is None or 5 - j < window) for j in range(8)
    ]
