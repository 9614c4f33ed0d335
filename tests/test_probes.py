"""The probes judge behaviour: every model below, under eager, sdpa and flex attention."""

import contextlib

import pytest
import torch
from torch.testing import assert_close
from transformers import LlamaForCausalLM

import attnviz
from attnviz.state import SeedBidirectionalModel

BACKENDS = ["eager", "sdpa", "flex_attention"]


def _plain(backend):
    return attnviz.tiny_model(attn_implementation=backend), contextlib.nullcontext()


def _config_not_causal(backend):
    return attnviz.tiny_model(attn_implementation=backend, is_causal=False), contextlib.nullcontext()


def _attnviz_patch(backend):
    model = attnviz.tiny_model(attn_implementation=backend)
    return model, attnviz.patched(model, bidirectional=True, no_rope=True)


def _bidirectional_only(backend):
    model = attnviz.tiny_model(attn_implementation=backend)
    return model, attnviz.bidirectional(model)


def _no_rope_only(backend):
    model = attnviz.tiny_model(attn_implementation=backend)
    return model, attnviz.no_rope(model)


def _state_listing(backend):
    return SeedBidirectionalModel(attnviz.tiny_config(attn_implementation=backend)).eval(), contextlib.nullcontext()


def _book_subclass(backend):
    config = attnviz.tiny_config(attn_implementation=backend)
    return attnviz.LlamaBidirectionalModel(config).eval(), contextlib.nullcontext()


# (build, attends_to_future, uses_positions)
CASES = {
    "plain LlamaModel": (_plain, False, True),
    "config.is_causal=False": (_config_not_causal, True, True),
    "attnviz bidirectional + no_rope": (_attnviz_patch, True, False),
    "attnviz bidirectional only": (_bidirectional_only, True, True),
    "attnviz no_rope only (still causal)": (_no_rope_only, False, True),
    "STATE listing 2": (_state_listing, True, False),
    "attnviz.LlamaBidirectionalModel": (_book_subclass, True, False),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_verdicts(case, backend):
    build, future, positions = CASES[case]
    model, patch = build(backend)
    with patch:
        report = attnviz.probe_report(model)
        assert attnviz.attends_to_future(model) is future
        assert attnviz.uses_positions(model) is positions
    assert report.attends_to_future is future, str(report)
    assert report.uses_positions is positions, str(report)
    assert report.backend == backend
    # the verdicts are not borderline: the effect is far from the threshold either way
    for effect in (report.future_effect, report.permutation_effect):
        assert effect < report.threshold / 10 or effect > report.threshold * 100, str(report)


def test_state_listing_override_is_never_called():
    SeedBidirectionalModel.update_causal_mask_calls = 0
    model, _ = _state_listing("eager")
    attnviz.probe_report(model)
    assert SeedBidirectionalModel.update_causal_mask_calls == 0


def test_report_is_readable_and_names_its_settings():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    text = str(attnviz.probe_report(model, seq_len=6))
    assert "backend sdpa" in text
    assert f"transformers {attnviz.versions(warn=False)['transformers']}" in text
    assert "attends to the future: no (causal)" in text
    assert "uses positions:        YES" in text
    assert "threshold" in text and "rtol" in text and "6 random inputs_embeds" in text


def test_probe_restores_training_mode_and_needs_three_positions():
    model = attnviz.tiny_model().train()
    attnviz.probe_report(model)
    assert model.training
    with pytest.raises(ValueError, match="at least 3"):
        attnviz.probe_report(model, seq_len=2)


def test_probe_follows_the_model_dtype():
    model = attnviz.tiny_model().to(torch.bfloat16)
    report = attnviz.probe_report(model)
    assert not report.attends_to_future and report.uses_positions


@pytest.mark.parametrize("offset", [-1, -2, 0, 2])
def test_offset_score_is_the_mean_weight_on_that_diagonal(offset):
    weights = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(offset + 5))
    by_hand = []
    for head in range(3):
        cells = [weights[b, head, q, q + offset] for b in range(2) for q in range(6) if 0 <= q + offset < 6]
        by_hand.append(torch.stack(cells).mean())
    score = attnviz.offset_score(weights, offset=offset)
    assert score.shape == (3,)
    assert_close(score, torch.stack(by_hand))


def test_probes_are_deterministic_and_pass_their_settings_on():
    model = attnviz.tiny_model(attn_implementation="sdpa")
    first, second = attnviz.probe_report(model), attnviz.probe_report(model)
    assert first == second, "the probes' inputs and permutation come from fixed seeds"
    assert attnviz.probe_report(model, seed=1).permutation_effect != first.permutation_effect
    assert attnviz.probe_report(model, seq_len=5).seq_len == 5
    for probe in (attnviz.attends_to_future, attnviz.uses_positions):
        with pytest.raises(ValueError, match="seq_len must be at least 3"):
            probe(model, seq_len=2)


def test_use_cache_reaches_every_probe_call():
    from attnviz.state import seed_backbone

    seen = []
    model = attnviz.tiny_model(attn_implementation="sdpa")
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["use_cache"]), with_kwargs=True)
    attnviz.probe_report(model)
    attnviz.probe_report(model, use_cache=True)
    assert seen == [False] * 3 + [True] * 3
    # a model patched by attnviz refuses a cache; the seed listing on 5.24 takes one and stays bidirectional
    with attnviz.bidirectional(model), pytest.raises(ValueError, match="cannot serve a bidirectional model"):
        attnviz.probe_report(model, use_cache=True)
    seed = seed_backbone(attnviz.tiny_config(attn_implementation="sdpa")).eval()
    assert attnviz.probe_report(seed, use_cache=True).attends_to_future


def test_report_names_the_model_class_dtype_and_threshold_settings():
    model = attnviz.tiny_model(attn_implementation="sdpa").to(torch.bfloat16)
    report = attnviz.probe_report(model, seq_len=3)  # three positions is the least the probes accept
    assert report.model == "LlamaModel" and report.seq_len == 3
    assert report.dtype == "torch.bfloat16"
    assert report.rtol == attnviz.probes.relative_tolerance(torch.bfloat16) == 8 * torch.finfo(torch.bfloat16).eps
    lines = str(report).splitlines()
    assert lines[0] == f"attnviz probe report: LlamaModel (backend sdpa, transformers {report.transformers})"
    assert len(lines) == 4 and lines[1].startswith("  attends to the future: no (causal)")
    assert "for torch.bfloat16 x output scale), 3 random inputs_embeds" in lines[3]
    wrapper = LlamaForCausalLM(attnviz.tiny_config()).eval()
    assert attnviz.probe_report(wrapper).model == "LlamaForCausalLM"


def test_threshold_is_relative_to_the_output_scale_with_a_floor_of_one():
    # The last norm's weight scales every output: the threshold follows the scale above 1 and
    # stays at rtol below it, so a model with small outputs is not judged by an ever smaller bar.
    model = attnviz.tiny_model()
    reports = {}
    for scale in (0.01, 10.0, 100.0):
        with torch.no_grad():
            model.norm.weight.fill_(scale)
        reports[scale] = attnviz.probe_report(model)
    assert reports[0.01].threshold == reports[0.01].rtol == attnviz.probes.DEFAULT_RTOL
    assert reports[10.0].threshold > 10 * reports[10.0].rtol
    assert reports[100.0].threshold == pytest.approx(10 * reports[10.0].threshold, rel=1e-5)
    for report in reports.values():  # the verdicts do not depend on the scale
        assert not report.attends_to_future and report.uses_positions


def test_probes_change_only_the_last_input_and_permute_every_position():
    seen = []
    model = attnviz.tiny_model(attn_implementation="sdpa")
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"]), with_kwargs=True)
    report = attnviz.probe_report(model, seq_len=5)
    base, changed, permuted = seen
    assert base.shape == (1, 5, 128), "one sequence of seq_len made-up inputs"
    assert torch.equal(changed[:, :-1], base[:, :-1]) and not torch.equal(changed[:, -1], base[:, -1])
    # each permuted row is some other position's input: no position keeps its place
    order = [next(j for j in range(5) if torch.equal(permuted[0, i], base[0, j])) for i in range(5)]
    assert sorted(order) == list(range(5)) and all(i != j for i, j in enumerate(order))
    assert report.seq_len == 5
    for seed in range(20):  # the derangement holds for every seed and length, not just this one
        for n in (3, 4, 8):
            order = attnviz.probes._derangement(n, seed)
            assert sorted(order.tolist()) == list(range(n)) and not (order == torch.arange(n)).any()


def test_probe_report_does_not_warn_about_versions(monkeypatch, recwarn):
    # the report names the transformers version it ran on; warning about pins is versions()'s job
    monkeypatch.setitem(attnviz.PINNED_VERSIONS, "transformers", "0.0.0")
    attnviz.probe_report(attnviz.tiny_model())
    assert not [w for w in recwarn if "checked against" in str(w.message)]


def test_offset_score_names_the_sequence_length_it_could_not_use():
    weights = torch.rand(1, 3, 5, 5)  # 3 heads, 5 queries: the message must say 5
    with pytest.raises(ValueError, match="offset -5 leaves no query with a key in a sequence of 5"):
        attnviz.offset_score(weights, offset=-5)
    with pytest.raises(ValueError, match=r"got shape \(3, 5, 5\)"):
        attnviz.offset_score(weights[0])
