"""The probes judge behaviour: every model below, under eager, sdpa and flex attention."""

import contextlib

import pytest
import torch
from torch.testing import assert_close

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
