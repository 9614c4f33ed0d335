"""Beyond Llama: the patches, capture and probes on Mistral, Qwen2 and Qwen3 (chapters 11 and 12).

Every family is built tiny and random, with sliding windows where the family has them: Mistral's
window covers every layer, Qwen2 and Qwen3 mix full and sliding layers through ``layer_types``.
"""

import subprocess
import sys
import warnings

import pytest
import torch
from torch.testing import assert_close
from transformers import (
    AutoModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralForCausalLM,
    MistralModel,
    PretrainedConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    masking_utils,
)
from transformers.models.llama.modeling_llama import LlamaAttention
from transformers.models.mistral.modeling_mistral import MistralAttention
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RMSNorm

import attnviz
from attnviz import families
from attnviz.reference import rms_norm, sliding_window_mask

WINDOW = 4
SEQ = 12
# one config per family: every family with a window shorter than the inputs
FAMILY_FIELDS = {
    "llama": {},
    "mistral": {"sliding_window": WINDOW},
    "qwen2": {"layer_types": ["sliding_attention", "full_attention"], "sliding_window": WINDOW},
    "qwen3": {"layer_types": ["full_attention", "sliding_attention"], "sliding_window": WINDOW},
}
SLIDING_LAYERS = {"llama": [], "mistral": [0, 1], "qwen2": [0], "qwen3": [1]}
WRAPPERS = {"mistral": MistralForCausalLM, "qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM}
FAMILIES = ["mistral", "qwen2", "qwen3"]

IDS = torch.randint(0, 256, (2, SEQ), generator=torch.Generator().manual_seed(0))
PADDED = torch.ones(2, SEQ, dtype=torch.long)
PADDED[1, :3] = 0


def _model(family, backend="eager", seed=0, **extra):
    return attnviz.tiny_model(family, attn_implementation=backend, seed=seed, **{**FAMILY_FIELDS[family], **extra})


def test_tiny_configs_build_each_family_with_the_windows_asked_for():
    for family, layers in SLIDING_LAYERS.items():
        model = _model(family)
        assert type(model).__name__ == {"llama": "LlamaModel", "mistral": "MistralModel"}.get(
            family, family.capitalize() + "Model"
        )
        assert attnviz.sliding_windows(model) == dict.fromkeys(layers, WINDOW)
    # without a window asked for, no family has one (Mistral's 4096 default is switched off)
    for family in FAMILIES:
        assert attnviz.sliding_windows(attnviz.tiny_model(family)) == {}


@pytest.mark.parametrize(
    ("family", "fields", "message"),
    [
        ("gemma", {}, r"unknown family 'gemma'; attnviz knows llama, mistral, qwen2, qwen3"),
        ("qwen3", {"layer_types": ["full_attention"]}, r"layer_types has 1 entries for 2 layers"),
        ("qwen2", {"layer_types": ["sliding_attention"] * 2}, r"also pass sliding_window"),
    ],
)
def test_tiny_config_errors_say_what_to_do(family, fields, message):
    with pytest.raises(ValueError, match=message):
        attnviz.tiny_config(family, **fields)


def test_tiny_model_refuses_a_config_of_another_family():
    with pytest.raises(ValueError, match="a qwen3 model needs a Qwen3Config; got a LlamaConfig"):
        attnviz.tiny_model("qwen3", attnviz.tiny_config())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", ["eager", "sdpa", "flex_attention"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_capture_equals_eager_output_attentions(family, backend, bidirectional, padded):
    inputs = {"input_ids": IDS, **({"attention_mask": PADDED} if padded else {})}
    eager = _model(family, seed=2)
    with attnviz.patched(eager, bidirectional=bidirectional), torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
    model = _model(family, backend, seed=2)
    with attnviz.patched(model, bidirectional=bidirectional):
        captured = attnviz.capture_attention(model, **inputs)
    assert len(captured) == len(expected) == 2
    for got, want in zip(captured, expected, strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_sliding_layers_are_zero_outside_the_window(family, backend, bidirectional):
    model = _model(family, backend)
    with attnviz.patched(model, bidirectional=bidirectional):
        captured = attnviz.capture_attention(model, input_ids=IDS)
    window = sliding_window_mask(SEQ, WINDOW, causal=not bidirectional)
    full = torch.ones(SEQ, SEQ, dtype=torch.bool) if bidirectional else sliding_window_mask(SEQ, SEQ)
    for layer, weights in enumerate(captured):
        allowed = window if layer in SLIDING_LAYERS[family] else full
        assert torch.all(weights[..., ~allowed] == 0), f"layer {layer} has weight outside its pattern"
        assert torch.all(weights[..., allowed] > 0), f"layer {layer} is missing weight inside its pattern"


def test_qwen3_capture_applies_qk_norm_before_rope():
    # With its norm weights scaled, Qwen3's q_norm/k_norm change the scores: a capture that skipped
    # them (Llama's path) would differ from eager's own weights.
    eager, sdpa = _model("qwen3", seed=5), _model("qwen3", "sdpa", seed=5)
    for model in (eager, sdpa):
        for layer in model.layers:
            layer.self_attn.q_norm.weight.data.mul_(3.0)
    with torch.no_grad():
        expected = eager(input_ids=IDS, output_attentions=True).attentions
    captured = attnviz.capture_attention(sdpa, input_ids=IDS)
    for got, want in zip(captured, expected, strict=True):
        assert_close(got, want)
    assert isinstance(sdpa.layers[0].self_attn, Qwen3Attention)


# (patches, attends_to_future, uses_positions) on a model whose every layer attends to the whole input
FULL_CASES = {
    "plain": ({}, False, True),
    "bidirectional": ({"bidirectional": True}, True, True),
    "no_rope": ({"no_rope": True}, False, True),
    "bidirectional + no_rope": ({"bidirectional": True, "no_rope": True}, True, False),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("case", list(FULL_CASES))
@pytest.mark.parametrize("wrapped", [False, True], ids=["backbone", "ForCausalLM"])
def test_probe_verdicts_on_full_attention_models(family, backend, case, wrapped):
    patches, future, positions = FULL_CASES[case]
    fields = attnviz.FAMILIES[family].no_window
    if wrapped:
        config = attnviz.tiny_config(family, attn_implementation=backend, **fields)
        model = WRAPPERS[family](config).eval()
    else:
        model = _model(family, backend, **fields)
    assert attnviz.sliding_windows(model) == {}
    with attnviz.patched(model, **patches):
        report = attnviz.probe_report(model, seq_len=SEQ)
    assert (report.attends_to_future, report.uses_positions) == (future, positions), str(report)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_a_window_keeps_positions_even_without_rope(family, backend):
    model = _model(family, backend)
    with pytest.warns(attnviz.PositionWarning, match=r"sliding-window attention in layers \[.*\] \(window \[4\]"):
        with attnviz.bidirectional(model), attnviz.no_rope(model):
            report = attnviz.probe_report(model, seq_len=SEQ)
            assert report.attends_to_future and report.uses_positions, str(report)
            # a window as long as the input covers it: order stops mattering
            assert not attnviz.uses_positions(model, seq_len=WINDOW)


def test_no_rope_is_silent_on_full_attention_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for family in ["llama", *FAMILIES]:
            attnviz.no_rope(attnviz.tiny_model(family)).restore()


def test_probe_sees_the_future_beyond_the_first_outputs_reach():
    # Mistral with a window of 4 in both layers: the first output cannot reach the 12th input even
    # bidirectionally (2 layers x 4 tokens), but the outputs just before it can.
    model = _model("mistral")
    with attnviz.bidirectional(model):
        report = attnviz.probe_report(model, seq_len=SEQ)
        embeds = torch.randn(1, SEQ, 128, generator=torch.Generator().manual_seed(1))
        changed = embeds.clone()
        changed[:, -1] += 1.0
        with torch.no_grad():
            first = [model(inputs_embeds=e).last_hidden_state[0, 0] for e in (embeds, changed)]
    assert torch.equal(first[0], first[1])
    assert report.attends_to_future


@pytest.mark.parametrize("family", FAMILIES)
def test_patches_restore_each_family_bitwise(family):
    model = _model(family, "sdpa")
    with torch.no_grad():
        before = model(input_ids=IDS).last_hidden_state
        with pytest.warns(attnviz.PositionWarning), attnviz.patched(model, bidirectional=True, no_rope=True):
            assert not torch.equal(model(input_ids=IDS).last_hidden_state, before)
        assert torch.equal(model(input_ids=IDS).last_hidden_state, before)
    assert "forward" not in vars(model)
    assert type(model.rotary_emb).__name__.endswith("RotaryEmbedding")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_reference_sliding_mask_matches_transformers(bidirectional):
    config = attnviz.tiny_config("mistral", sliding_window=WINDOW)
    embeds = torch.zeros(1, SEQ, config.hidden_size)
    if bidirectional:
        mask = masking_utils.create_bidirectional_sliding_window_mask(config, embeds, None)
    else:
        mask = masking_utils.create_sliding_window_causal_mask(config, embeds, None, cache=None)
    allowed = mask[0, 0] == 0  # eager's additive form: 0 where allowed
    assert torch.equal(allowed, sliding_window_mask(SEQ, WINDOW, causal=not bidirectional))
    assert torch.equal(allowed, allowed.T) == bidirectional
    assert allowed.sum(-1).max().item() == (2 * WINDOW + 1 if bidirectional else WINDOW)


def test_reference_rms_norm_matches_qwen3():
    norm = Qwen3RMSNorm(32, eps=1e-6)
    norm.weight.data.uniform_(0.5, 2.0)
    x = torch.randn(2, 5, 4, 32)
    assert_close(rms_norm(x, norm.weight, 1e-6), norm(x))
    with pytest.raises(ValueError, match="window must be at least 1"):
        sliding_window_mask(4, 0)


def test_source_diff_shows_qwen3s_changes():
    from transformers.models.llama.modeling_llama import LlamaAttention

    forward = attnviz.diff(LlamaAttention.forward, Qwen3Attention.forward)
    added = "\n".join(forward.added)
    assert "self.q_norm(" in added and "self.k_norm(" in added and "sliding_window=self.sliding_window" in added
    assert "q_norm" not in "\n".join(forward.removed)
    assert forward.text.startswith("--- src/transformers/models/llama/modeling_llama.py (transformers ")
    assert "```diff" in forward._repr_markdown_()


def test_cli_checks_a_saved_qwen3_folder(tmp_path):
    model = WRAPPERS["qwen3"](attnviz.tiny_config("qwen3", **FAMILY_FIELDS["qwen3"]))
    model.save_pretrained(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path), type(model.model))
    result = subprocess.run(
        [sys.executable, "-m", "attnviz", "check", "--model", str(tmp_path), "--bidirectional", "--length", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Qwen3Model" in result.stdout and "attends to the future: YES" in result.stdout


class _OnlyWindowSize(dict):
    """A flash kernel's feature map that supports window_size and nothing else."""

    def __missing__(self, key):
        return key == "window_size"


SUPPORTS_WINDOW_ONLY = _OnlyWindowSize()


@pytest.mark.parametrize("is_causal", [True, False], ids=["causal", "bidirectional"])
def test_capture_follows_flash_window_rule(is_causal):
    # Flash cannot run here (no GPU), so this checks the rule capture applies for it against the
    # flash kwargs transformers itself computes for the kernel.
    from transformers.modeling_flash_attention_utils import _process_flash_attention_kwargs

    from attnviz.capture import MaskRows

    attention = _model("qwen3").layers[1].self_attn  # the sliding layer
    masks = MaskRows(attention, {"is_causal": is_causal}, "flash_attention_2", 1, SEQ, SEQ, "cpu")
    allowed = torch.zeros(1, 1, SEQ, SEQ, dtype=torch.bool)
    for start in range(0, SEQ, 3):  # a few query rows at a time, as capture computes them
        stop = min(start + 3, SEQ)
        mask = masks.rows(start, stop)
        assert mask.bias is None and mask.allowed_start == mask.key_start
        allowed[:, :, start:stop, mask.key_start : mask.key_stop] = mask.allowed
    kwargs = _process_flash_attention_kwargs(
        SEQ, SEQ, is_causal, sliding_window=WINDOW, supports_mapping=SUPPORTS_WINDOW_ONLY
    )
    assert "window_size" in kwargs
    left, right = kwargs["window_size"]
    offset = torch.arange(SEQ)[:, None] - torch.arange(SEQ)[None, :]  # i - j
    expected = (offset <= left) & (-offset <= (0 if kwargs["causal"] else right))
    assert torch.equal(allowed[0, 0], expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_through_a_for_causal_lm_wrapper(family):
    config = attnviz.tiny_config(family, attn_implementation="sdpa", **FAMILY_FIELDS[family])
    wrapper = WRAPPERS[family](config).eval()
    with attnviz.patched(wrapper, bidirectional=True):
        captured = attnviz.capture_attention(wrapper, input_ids=IDS, attention_mask=PADDED)
    wrapper.set_attn_implementation("eager")
    with attnviz.patched(wrapper, bidirectional=True), torch.no_grad():
        expected = wrapper(input_ids=IDS, attention_mask=PADDED, output_attentions=True).attentions
    for layer, (got, want) in enumerate(zip(captured, expected, strict=True)):
        assert_close(got, want)
        if layer in SLIDING_LAYERS[family]:
            assert torch.all(got[1][..., ~sliding_window_mask(SEQ, WINDOW, causal=False)] == 0)


def test_explorer_on_a_windowed_qwen3_reports_that_positions_remain():
    model = _model("qwen3")
    explorer = attnviz.AttentionExplorer(model, None, IDS[:1])
    with pytest.warns(attnviz.PositionWarning):  # every NoRoPE redraw of a windowed model says so
        explorer.rope.value = "NoRoPE"
        explorer.causal.value = "bidirectional"
        explorer.layer.value = 1
    assert "attends both ways, uses positions" in explorer.status.value
    assert explorer.redraws == 4 and bytes(explorer.image.value).startswith(b"\x89PNG")


# -- the registry itself -----------------------------------------------------------------------
# FAMILIES is built once, at import; these rebuild it the way the import does and check each entry
# against the classes transformers itself exports.
TRANSFORMERS_CLASSES = {
    "llama": ("Llama", LlamaConfig, LlamaModel, LlamaAttention),
    "mistral": ("Mistral", MistralConfig, MistralModel, MistralAttention),
    "qwen2": ("Qwen2", Qwen2Config, Qwen2Model, Qwen2Attention),
    "qwen3": ("Qwen3", Qwen3Config, Qwen3Model, Qwen3Attention),
}


def test_the_registry_is_built_from_transformers_own_classes():
    for name, (prefix, *classes) in TRANSFORMERS_CLASSES.items():
        assert families._classes(name, prefix) == tuple(classes)
    # a family this transformers lacks (a module or a class) is left out, not an error
    assert families._classes("no_such_family", "NoSuch") is None
    assert families._classes("qwen3", "Qwen9") is None
    rebuilt = families._registry()
    assert list(rebuilt) == list(TRANSFORMERS_CLASSES)
    for name, entry in rebuilt.items():
        _, config_class, backbone_class, attention_class = TRANSFORMERS_CLASSES[name]
        assert (entry.name, entry.config_class, entry.backbone_class, entry.attention_class) == (
            name,
            config_class,
            backbone_class,
            attention_class,
        )
        assert entry == attnviz.FAMILIES[name] == families.family(name)
    assert rebuilt["llama"].read_window(_model("llama").layers[0].self_attn) is None
    assert rebuilt["qwen3"].qk_norm and not rebuilt["qwen2"].qk_norm
    assert rebuilt["mistral"].tiny_defaults == {"sliding_window": None}


@pytest.mark.parametrize("family", ["llama", *FAMILIES])
def test_family_of_names_the_backbones_family(family):
    model = _model(family)
    assert families.family_of(model) is families.family(family)
    config = attnviz.tiny_config(family, **FAMILY_FIELDS[family])
    wrapper = {"llama": LlamaForCausalLM, **WRAPPERS}[family](config)
    assert families.family_of(wrapper) is families.family(family)
    with pytest.raises(ValueError, match=r"got Linear\. Supported backbones"):
        families.family_of(torch.nn.Linear(2, 2))


def test_head_dim_is_the_configs_or_hidden_size_over_heads():
    # Qwen3 sets head_dim apart from hidden_size // num_attention_heads (here 32, not 16):
    # the attention transformers builds is that wide
    config = attnviz.tiny_config("qwen3", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32)
    assert families.head_dim(config) == attnviz.tiny_model("qwen3", config).layers[0].self_attn.head_dim == 32
    # a config without head_dim (or with None) gets the whole number hidden_size // num_attention_heads
    for bare in (PretrainedConfig(hidden_size=96, num_attention_heads=3), attnviz.tiny_config(head_dim=None)):
        width = families.head_dim(bare)
        assert type(width) is int and width == bare.hidden_size // bare.num_attention_heads


def test_mistral_attention_without_a_window_field_is_full_attention():
    # MistralAttention reads getattr(config, "sliding_window", None) at call time: a config without
    # the field (LlamaConfig has none) means full attention, not an error
    attention = MistralAttention(attnviz.tiny_config("llama"), layer_idx=0)
    assert not hasattr(attention.config, "sliding_window")
    assert families.layer_window(attention) is None


def test_the_peft_hint_names_the_wrapped_model_only_when_it_is_supported():
    from peft import LoraConfig, get_peft_model

    llama = get_peft_model(LlamaForCausalLM(attnviz.tiny_config()), LoraConfig(r=4, target_modules=["q_proj"]))
    with pytest.raises(ValueError) as refused:
        attnviz.find_backbone(llama)
    message = str(refused.value)
    assert message.startswith("attnviz works on Llama-family models (Llama, Mistral, Qwen2, Qwen3); got PeftModel. ")
    assert message.endswith(
        "This looks like a PEFT model: patch the transformers model it wraps, "
        "`PeftModel.base_model.model` (a LlamaForCausalLM)."
    )
    # PEFT around a model attnviz cannot patch either: no hint pointing at it
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0))
    wrapped = get_peft_model(gpt2, LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    with pytest.raises(ValueError, match=r"got PeftModel\. Supported backbones") as refused:
        attnviz.find_backbone(wrapped)
    assert "PEFT" not in str(refused.value)
