"""attnviz.testing: the assertions users put in their own test suites, on models that pass and fail."""

import re
import subprocess
import sys
import textwrap

import pytest

import attnviz
import attnviz.testing


@pytest.fixture(scope="module")
def causal():
    return attnviz.tiny_model()


@pytest.fixture(scope="module")
def set_model():
    model = attnviz.tiny_model(seed=1)
    attnviz.bidirectional(model)  # for good: this model stays patched
    attnviz.no_rope(model)
    return model


def test_exported_lazily_from_the_package_face():
    for name in ("assert_bidirectional", "assert_causal", "assert_position_free", "assert_uses_positions"):
        assert getattr(attnviz, name) is getattr(attnviz.testing, name)
        assert name in attnviz.__all__
    assert "testing" in attnviz.__all__


def test_a_plain_llama_is_causal_and_uses_positions(causal):
    report = attnviz.assert_causal(causal)
    assert attnviz.assert_uses_positions(causal) == report
    assert not report.attends_to_future and report.uses_positions


def test_a_plain_llama_fails_the_encoder_assertions_with_the_numbers(causal):
    report = attnviz.probe_report(causal)
    with pytest.raises(AssertionError, match="expected LlamaModel to attend to the future") as failed:
        attnviz.assert_bidirectional(causal)
    assert f"moved the earlier outputs by only {report.future_effect:.3g}" in str(failed.value)
    assert f"threshold {report.threshold:.3g}" in str(failed.value)
    assert "attnviz probe report: LlamaModel" in str(failed.value)  # the whole report follows
    with pytest.raises(AssertionError, match=r"changed the outputs by [0-9.e+-]+ beyond the permutation") as failed:
        attnviz.assert_position_free(causal)
    assert f"{report.permutation_effect:.3g}" in str(failed.value)


def test_a_patched_model_passes_the_encoder_assertions_and_fails_the_decoder_ones(set_model):
    report = attnviz.assert_bidirectional(set_model)
    assert attnviz.assert_position_free(set_model) == report
    with pytest.raises(AssertionError, match="expected LlamaModel to be causal") as failed:
        attnviz.assert_causal(set_model)
    assert f"by {report.future_effect:.3g}" in str(failed.value)
    with pytest.raises(AssertionError, match="expected LlamaModel to use positions"):
        attnviz.assert_uses_positions(set_model)


def test_bidirectional_with_rope_still_uses_positions():
    model = attnviz.tiny_model()
    with attnviz.bidirectional(model):
        attnviz.assert_bidirectional(model)
        attnviz.assert_uses_positions(model)


def test_the_seed_override_alone_is_caught_as_causal():
    """The founding bug: an override transformers no longer calls. The assertion must say so."""
    from transformers import LlamaModel

    from attnviz.state import SeedBidirectionalModel

    class OverrideOnly(SeedBidirectionalModel):
        def forward(self, **kwargs):
            return LlamaModel.forward(self, **kwargs)  # without the is_causal=False keyword

    with pytest.raises(AssertionError, match="it is causal"):
        attnviz.assert_bidirectional(OverrideOnly(attnviz.tiny_config()).eval())


def test_keywords_reach_the_probe(set_model):
    assert attnviz.assert_bidirectional(set_model, seq_len=5, seed=3).seq_len == 5


def test_in_a_real_pytest_run_the_failure_shows_the_numbers(tmp_path):
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import attnviz

            def test_encoder():
                attnviz.assert_bidirectional(attnviz.tiny_model())
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "AssertionError: expected LlamaModel to attend to the future" in result.stdout
    assert re.search(r"moved the earlier outputs by only [0-9.e+-]+", result.stdout)
    assert "1 failed" in result.stdout
