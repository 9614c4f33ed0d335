"""attention_map streams exact attention rows: its pooled map equals pooling capture_attention's
weights, on every backend and mask form, without ever holding seq x seq."""

import pytest
import torch
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaForCausalLM

import attnviz
from attnviz import capture

SEQ = 1024


def _ids(seq: int, vocab: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (1, seq), generator=torch.Generator().manual_seed(seed))


def _block_pool(weights: torch.Tensor, edges: torch.Tensor, reduce: str) -> torch.Tensor:
    """Pool a full (seq, seq) map by the map's edges, the slow obvious way."""
    e = edges.tolist()
    rows = []
    for i in range(len(e) - 1):
        row = []
        for j in range(len(e) - 1):
            block = weights[e[i] : e[i + 1], e[j] : e[j + 1]]
            row.append(block.amax() if reduce == "max" else block.mean())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _even_pool(weights: torch.Tensor, size: int, reduce: str) -> torch.Tensor:
    seq = weights.shape[-1]
    blocks = weights.reshape(size, seq // size, size, seq // size)
    return blocks.amax((1, 3)) if reduce == "max" else blocks.mean((1, 3))


def _diagonal_sums(weights: torch.Tensor) -> torch.Tensor:
    """Total weight at each offset query - key, from -(seq - 1) to seq - 1."""
    seq, weights = weights.shape[0], weights.double()
    return torch.stack([torch.diagonal(weights, -d).sum() for d in range(-(seq - 1), seq)])


def _check_against_capture(model, layer, head, size, rows, **inputs):
    full = attnviz.capture_attention(model, layers=[layer], heads=[head], **inputs)[layer][0, 0]
    for reduce in ("max", "mean"):
        result = attnviz.attention_map(model, layer=layer, head=head, size=size, reduce=reduce, rows=rows, **inputs)
        expected = _block_pool(full, result.edges, reduce) if full.shape[0] % size else _even_pool(full, size, reduce)
        assert_close(result.pooled, expected, rtol=0, atol=1e-6)
    # the distance curve of the same pass: every diagonal's total weight
    assert_close(result.distance.sums, _diagonal_sums(full), rtol=1e-5, atol=1e-6)
    allowed = _block_pool((full > 0).float(), result.edges, "max") > 0
    return result, full, allowed


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("window", [None, 100], ids=["full", "window"])
def test_pooled_map_equals_pooling_the_captured_weights(backend, bidirectional, window):
    name = "mistral" if window else "llama"
    fields = {"sliding_window": window} if window else {}
    model = attnviz.tiny_model(name, attn_implementation=backend, max_position_embeddings=SEQ, **fields)
    with attnviz.patched(model, bidirectional=bidirectional):
        # 96 rows a step: several steps, and steps that end inside a block of the map
        result, full, _ = _check_against_capture(model, 1, 3, 128, 96, input_ids=_ids(SEQ))
    assert result.edges.tolist() == list(range(0, SEQ + 1, SEQ // 128))
    assert bool(result.allowed.triu(1).any()) == bidirectional
    if window:  # blocks of keys beyond the window are masked: grey, from the mask
        assert not result.allowed[-1, 0]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_flex_block_masks_are_evaluated_a_block_of_rows_at_a_time(bidirectional):
    model = attnviz.tiny_model("mistral", attn_implementation="flex_attention", sliding_window=64)
    with attnviz.patched(model, bidirectional=bidirectional):
        _check_against_capture(model, 1, 0, 64, 100, input_ids=_ids(512))


def test_padding_norope_qk_norm_gqa_and_uneven_blocks():
    """Qwen3 (QK-norm, a sliding layer), NoRoPE, left padding, head 3 reading key/value head 1,
    and 600 tokens in 64 blocks of 9 or 10."""
    model = attnviz.tiny_model(
        "qwen3",
        attn_implementation="sdpa",
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=50,
        max_position_embeddings=SEQ,
    )
    padding = torch.ones(1, 600, dtype=torch.long)
    padding[0, :7] = 0
    with pytest.warns(attnviz.PositionWarning), attnviz.no_rope(model):  # the window still knows positions
        for layer in (0, 1):
            result, _, allowed = _check_against_capture(
                model, layer, 3, 64, 50, input_ids=_ids(600), attention_mask=padding
            )
            # from the mask: padding queries 0-6 may attend to nothing (though softmax spreads them
            # over every key); queries 7 and 8 see keys 7 and 8, in block 0
            assert result.allowed[0].tolist() == [True] + [False] * 63
            assert torch.equal(result.allowed[1:], allowed[1:])
    assert sorted(set(result.edges.diff().tolist())) == [9, 10]


def test_eager_padding_rows_that_see_nothing():
    """Causal with left padding: the padding queries may attend to no key, and softmax spreads them
    over all keys (what eager returns); the map must not cut those rows short."""
    model = attnviz.tiny_model(max_position_embeddings=SEQ)
    padding = torch.ones(1, 256, dtype=torch.long)
    padding[0, :20] = 0
    with torch.no_grad():
        expected = model(_ids(256), attention_mask=padding, output_attentions=True).attentions[0][0, 1]
    result = attnviz.attention_map(
        model, layer=0, head=1, size=256, rows=8, input_ids=_ids(256), attention_mask=padding
    )
    assert_close(result.pooled, expected, rtol=0, atol=1e-6)
    assert_close(result.pooled[:20].sum(-1), torch.ones(20))


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements any operation returned."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_streaming_never_holds_seq_by_seq(bidirectional):
    seq = 4096
    model = attnviz.tiny_model(attn_implementation="sdpa", max_position_embeddings=seq)
    inputs = {"input_ids": _ids(seq), "use_cache": False}
    with attnviz.patched(model, bidirectional=bidirectional):
        whole = _LargestTensor()
        with whole:
            attnviz.capture_attention(model, layers=[1], heads=[0], **inputs)
        assert whole.largest >= seq * seq, "the probe should see capture's seq x seq weights"
        streamed = _LargestTensor()
        with streamed:
            attnviz.attention_map(model, layer=1, head=0, size=256, rows=128, **inputs)
    # the largest tensors are linear in seq (a step's 128 rows x every key, the MLP's activations)
    assert streamed.largest <= seq * seq // 16


def test_the_forward_stops_at_the_layer_asked_for():
    model = LlamaForCausalLM(attnviz.tiny_config(attn_implementation="sdpa")).eval()
    calls = []
    hooks = [
        model.model.layers[1].self_attn.register_forward_pre_hook(lambda *a: calls.append("layer 1")),
        model.model.layers[0].self_attn.register_forward_hook(lambda *a: calls.append("layer 0 attention")),
        model.lm_head.register_forward_pre_hook(lambda *a: calls.append("lm_head")),
    ]
    attnviz.attention_map(model, layer=0, head=0, size=8, input_ids=_ids(32))
    assert calls == [], "attention_map(layer=0) ran more than the embeddings"
    attnviz.attention_map(model, layer=1, head=0, size=8, input_ids=_ids(32))
    assert calls == ["layer 0 attention", "layer 1"]
    calls.clear()
    attnviz.capture_attention(model, layers=[0], input_ids=_ids(32))
    assert calls == ["layer 0 attention"], "capture_attention(layers=[0]) ran the rest of the model"
    for hook in hooks:
        hook.remove()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    model.train()
    attnviz.attention_map(model, layer=1, head=0, size=8, input_ids=_ids(32))
    assert model.training and model.config._attn_implementation == "sdpa"


def test_a_refused_capture_points_to_the_map_which_streams_it(monkeypatch):
    """The switch: where capture_attention cannot fit, attention_map runs, with the same weights."""
    model = attnviz.tiny_model(attn_implementation="sdpa", max_position_embeddings=SEQ)
    ids = _ids(SEQ)
    small = attnviz.capture_attention(model, layers=[1], heads=[2], input_ids=ids)[1][0, 0]
    monkeypatch.setattr(capture, "_available_bytes", lambda device: 32 * 2**20)  # a machine with 32 MB free
    with pytest.raises(MemoryError, match=r"attnviz\.attention_map\(model, layer=\.\.\., head=\.\.\., \*\*inputs\)"):
        attnviz.capture_attention(model, layers=[1], heads=[2], input_ids=ids)
    result = attnviz.attention_map(model, layer=1, head=2, size=SEQ // 4, input_ids=ids)
    assert_close(result.pooled, _even_pool(small, SEQ // 4, "max"), rtol=0, atol=1e-6)


def test_the_result_unpacks_and_says_what_it_is():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    result = attnviz.attention_map(model, layer=-1, head=-1, size=10, reduce="mean", input_ids=_ids(100))
    pooled, edges = result
    assert pooled is result.pooled and edges is result.edges
    assert pooled.shape == (10, 10) and pooled.dtype == torch.float32
    assert edges.tolist() == list(range(0, 101, 10))
    assert (result.layer, result.head, result.seq, result.reduce) == (1, 3, 100, "mean")
    assert repr(result) == "AttentionMap(layer 1, head 3: 100 tokens pooled to 10 x 10 by mean)"
    # every query's weights sum to 1, so the offsets' totals add up to the number of queries
    assert abs(float(result.distance.sums.sum()) - 100) < 1e-4
    assert float(result.distance.sums[:99].abs().max()) == 0.0, "a causal head put weight on later keys"
    assert attnviz.attention_map(model, layer=0, head=0, size=512, input_ids=_ids(30)).pooled.shape == (30, 30)


def test_distance_bins():
    distance = attnviz.AttentionByDistance(torch.ones(2 * 100 - 1, dtype=torch.float64), 100)
    offset, mean = distance.binned(per_octave=1)
    # 0, +-1, then octaves 2-3, 4-7, ..., 64-99
    assert offset.tolist()[7:] == pytest.approx(
        [0, 1, 6**0.5, 28**0.5, 120**0.5, 496**0.5, 2016**0.5, (64 * 99) ** 0.5]
    )
    assert (offset[:7] == -offset[8:][::-1]).all()
    expected = [1 / 99, 2 / (98 + 97), 4 / (96 + 95 + 94 + 93)]
    assert mean[7:11].tolist() == pytest.approx([1 / 100, *expected])
    with pytest.raises(ValueError, match="per_octave"):
        distance.binned(per_octave=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reduce": "median"}, "reduce must be one of 'max', 'mean'"),
        ({"size": 0}, "positive integer"),
        ({"rows": 0}, "positive number of query rows"),
        ({"layer": 2}, r"indices of the model's 2 layers \(0 to 1"),
        ({"head": 4}, "indices of the model's 4 query heads"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, message):
    model = attnviz.tiny_model(attn_implementation="sdpa")
    arguments = {"layer": 0, "head": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        attnviz.attention_map(model, **arguments, input_ids=_ids(16))


def test_refuses_a_batch_a_cache_and_an_eager_forward_that_cannot_fit():
    from transformers import DynamicCache

    model = attnviz.tiny_model(attn_implementation="sdpa")
    with pytest.raises(ValueError, match=r"one sequence; got a batch of 2.*ids\[i : i \+ 1\]"):
        attnviz.attention_map(model, layer=0, head=0, input_ids=torch.zeros(2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="KV cache"):
        attnviz.attention_map(model, layer=0, head=0, input_ids=_ids(16), cache=DynamicCache())
    with pytest.raises(ValueError, match="needs the model's inputs"):
        attnviz.attention_map(model, layer=0, head=0)
    eager = attnviz.tiny_model(max_position_embeddings=1 << 20)
    with pytest.raises(MemoryError, match=r"eager attention.*set_attn_implementation\('sdpa'\)"):
        attnviz.attention_map(eager, layer=1, head=0, input_ids=torch.zeros(1, 300_000, dtype=torch.long))


def test_the_gpu_benchmark_long_context_case_runs_on_the_cpu_and_writes_what_chapter_14_reads(tmp_path):
    """benchmarks/gpu.py measures 128k tokens on a lent GPU; the same command, checked here at 1k.

    Chapter 14 reads gpu_long_context.json: these are the fields it prints and checks.
    """
    import json
    import subprocess
    import sys

    from conftest import ROOT

    command = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--only", "long_context", "--device", "cpu"]
    command += ["--seq", "1024", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "gpu_long_context.json").read_text())
    rows = {row["what"]: row for row in result["rows"]}
    assert list(rows) == ["forward to layer 1", "attention_map", "map alone", "max |difference| from pooled capture"]
    for what in ("forward to layer 1", "attention_map", "map alone"):
        assert rows[what]["seq"] == 1024 and rows[what]["dtype"] == "float32"
    # times are measured once each on a shared machine: only that they were (no timing comparison)
    assert rows["attention_map"]["seconds"] > 0 and rows["forward to layer 1"]["seconds"] > 0
    assert rows["max |difference| from pooled capture"]["value"] <= 1e-6
    assert {"date", "torch"} <= set(result["machine"]) and "gpu" not in result["machine"]


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("given", ["input_ids", "inputs_embeds"])
def test_an_eager_forward_may_take_80_percent_of_the_free_memory_and_no_more(monkeypatch, layer, given):
    """Eager's own forward to a layer holds its (1, 1, seq, seq) float mask and, from layer 1 on,
    the (1, heads, seq, seq) scores and weights of a layer before: at 16 tokens and 4 heads, in float32."""
    model = attnviz.tiny_model()
    square = 16 * 16 * 4
    needed = square + (2 * 4 * square if layer > 0 else 0)
    inputs = {"input_ids": _ids(16)} if given == "input_ids" else {"inputs_embeds": torch.randn(1, 16, 128)}
    monkeypatch.setattr(capture, "_available_bytes", lambda device: needed // 4 * 5)  # needed is exactly 80%
    assert attnviz.attention_map(model, layer=layer, head=0, size=4, **inputs).pooled.shape == (4, 4)
    monkeypatch.setattr(capture, "_available_bytes", lambda device: needed // 4 * 5 - 5)  # 4 bytes short
    with pytest.raises(MemoryError, match=rf"up to layer {layer} needs about .* at 16 tokens"):
        attnviz.attention_map(model, layer=layer, head=0, size=4, **inputs)
    # sdpa holds no seq x seq tensor: nothing to refuse
    sdpa = attnviz.tiny_model(attn_implementation="sdpa")
    assert attnviz.attention_map(sdpa, layer=layer, head=0, size=4, **inputs).pooled.shape == (4, 4)


def test_an_eager_model_without_ids_or_embeddings_gets_transformers_own_error():
    with pytest.raises(ValueError, match="input_ids or inputs_embeds"):  # not an error of the memory check
        attnviz.attention_map(attnviz.tiny_model(), layer=0, head=0, attention_mask=torch.ones(1, 16))
