"""Assertions for your own test suite: does this model really do what its patch promises?

Chapter 10 (``notebooks/10_recipes_in_the_wild.ipynb``) shows why a flag is not enough. Each
helper runs ``attnviz.probe_report`` on the model and raises ``AssertionError`` with the measured
numbers when the verdict is not the expected one; on success it returns the report. They are
plain functions, so pytest shows their message and no helper frames::

    import attnviz

    def test_my_encoder_sees_both_ways():
        attnviz.assert_bidirectional(build_my_encoder())

Any keyword argument goes to ``attnviz.probe_report`` (``seq_len``, ``seed``).
"""

from torch import nn

from attnviz.probes import ProbeReport, probe_report


def _fail(expected: str, report: ProbeReport, measured: str) -> AssertionError:
    return AssertionError(f"expected {report.model} to {expected}, but {measured}.\n{report}")


def assert_bidirectional(model: nn.Module, **kwargs) -> ProbeReport:
    """Fail unless changing the last input moves an earlier output: the model attends to the future."""
    __tracebackhide__ = True
    report = probe_report(model, **kwargs)
    if not report.attends_to_future:
        raise _fail(
            "attend to the future (bidirectional)",
            report,
            f"changing the last input moved the earlier outputs by only {report.future_effect:.3g} "
            f"(threshold {report.threshold:.3g}): it is causal",
        )
    return report


def assert_causal(model: nn.Module, **kwargs) -> ProbeReport:
    """Fail if changing the last input moves any earlier output: the model must be causal."""
    __tracebackhide__ = True
    report = probe_report(model, **kwargs)
    if report.attends_to_future:
        raise _fail(
            "be causal",
            report,
            f"changing the last input moved an earlier output by {report.future_effect:.3g} "
            f"(threshold {report.threshold:.3g}): it attends to the future",
        )
    return report


def assert_position_free(model: nn.Module, **kwargs) -> ProbeReport:
    """Fail unless permuting the inputs only permutes the outputs: the model ignores positions."""
    __tracebackhide__ = True
    report = probe_report(model, **kwargs)
    if report.uses_positions:
        raise _fail(
            "ignore positions (permutation-equivariant)",
            report,
            f"permuting the inputs changed the outputs by {report.permutation_effect:.3g} beyond the "
            f"permutation (threshold {report.threshold:.3g}); a causal mask or RoPE still orders them",
        )
    return report


def assert_uses_positions(model: nn.Module, **kwargs) -> ProbeReport:
    """Fail if permuting the inputs only permutes the outputs: the model must depend on order."""
    __tracebackhide__ = True
    report = probe_report(model, **kwargs)
    if not report.uses_positions:
        raise _fail(
            "use positions",
            report,
            f"permuting the inputs changed the outputs by only {report.permutation_effect:.3g} beyond the "
            f"permutation (threshold {report.threshold:.3g}): it is permutation-equivariant",
        )
    return report
