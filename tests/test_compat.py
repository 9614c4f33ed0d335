"""book/data/compat.json, written by scripts/compat_matrix.py, and what the package declares from it."""

import json
import os
import re
import traceback
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from packaging.version import Version

import attnviz.patch
from attnviz import state
from attnviz.state import COMPAT_BACKENDS, COMPAT_PATCHES, COMPAT_USE_CACHE, compat_rows

KEYS = {
    "transformers",
    "patch",
    "backend",
    "use_cache",
    "attends_to_future",
    "uses_positions",
    "refused",
    "error",
    "layer0_mask",
    "layer0_is_causal",
}
CELLS = {(p, b, c) for p in COMPAT_PATCHES for b in COMPAT_BACKENDS for c in COMPAT_USE_CACHE}
# the release whose rows the slow test regenerates: the last 4.x, where use_cache decides sdpa's verdict
OLD_RELEASE = "4.57.6"


def _rows(root):
    return json.loads((root / "book" / "data" / "compat.json").read_text(encoding="utf-8"))


def test_matrix_covers_six_versions_three_patches_two_backends_two_cache_settings(root):
    rows = _rows(root)
    assert all(set(row) == KEYS for row in rows)
    versions = {row["transformers"] for row in rows}
    assert len(versions) >= 6
    for version in versions:
        cells = [(r["patch"], r["backend"], r["use_cache"]) for r in rows if r["transformers"] == version]
        assert sorted(cells) == sorted(CELLS), version


def test_every_row_has_verdicts_a_refusal_or_the_patch_s_error(root):
    for row in _rows(root):
        measured = isinstance(row["attends_to_future"], bool) and isinstance(row["uses_positions"], bool)
        assert measured != bool(row["refused"] or row["error"]), row


def test_attnviz_works_or_refuses_and_pyproject_declares_the_floor(root):
    rows = [r for r in _rows(root) if r["patch"] == "attnviz"]
    working = sorted({Version(r["transformers"]) for r in rows if r["attends_to_future"]})
    for row in rows:
        assert row["attends_to_future"] is True or row["refused"], row  # never silently causal
        if row["use_cache"]:
            assert row["refused"], row  # a bidirectional model refuses a cache
    assert working[0] == attnviz.patch.NATIVE_IS_CAUSAL
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'"transformers>={working[0].major}\.{working[0].minor}"', pyproject)


def test_live_rows_match_the_committed_rows_for_this_transformers(root):
    import transformers

    committed = [r for r in _rows(root) if r["transformers"] == transformers.__version__]
    assert committed, f"compat.json has no rows for transformers {transformers.__version__}"
    assert compat_rows() == committed


def test_a_harness_failure_raises_instead_of_becoming_a_row(monkeypatch):
    def broken(model, **kwargs):
        raise AttributeError("a bug in the probes")

    monkeypatch.setattr("attnviz.probes.probe_report", broken)
    with pytest.raises(AttributeError, match="a bug in the probes"):
        compat_rows()


def test_a_harness_bug_in_attnviz_s_own_files_is_told_apart_from_a_patch_s_error():
    from attnviz import probes

    def raise_from(code: str, filename: str):
        try:
            exec(compile(code, filename, "exec"), {})
        except Exception as error:
            return error

    assert state._raised_by_harness(raise_from("raise KeyError('x')", probes.__file__))
    assert not state._raised_by_harness(raise_from("raise TypeError('x')", "/site-packages/transformers/x.py"))
    # the patches state.py reproduces are the patch under test, not the harness
    error = raise_from("def forward():\n    raise TypeError('x')\nforward()", state.__file__)
    assert traceback.extract_tb(error.__traceback__)[-1].name == "forward"
    assert not state._raised_by_harness(error)


def test_an_unpatched_model_that_does_not_probe_as_causal_stops_the_table(monkeypatch):
    class Report:
        attends_to_future, uses_positions = True, False

    monkeypatch.setattr("attnviz.probes.probe_report", lambda model, **kwargs: Report())
    with pytest.raises(state.HarnessError, match="unpatched LlamaModel"):
        compat_rows()


def test_attnviz_s_cache_refusal_is_a_refusal_but_its_bugs_are_not(monkeypatch):
    rows = {(r["patch"], r["backend"], r["use_cache"]): r for r in compat_rows()}
    refusal = rows["attnviz", "sdpa", True]
    assert refusal["refused"] and "cannot serve a bidirectional model" in refusal["error"]

    def broken(module, kwargs):
        raise AttributeError("a bug in attnviz.patch")

    monkeypatch.setattr(attnviz.patch, "bidirectional_call", broken)
    with pytest.raises(AttributeError, match="a bug in attnviz.patch"):
        state._compat_row("attnviz", "sdpa", False)


def test_the_4_57_sdpa_row_depends_on_the_cache(root):
    """Chapter 6's explanation: 4.57 builds a causal bool mask without a cache, none with one."""
    by = {(r["transformers"], r["patch"], r["backend"], r["use_cache"]): r for r in _rows(root)}
    without, with_cache = by["4.57.6", "seed", "sdpa", False], by["4.57.6", "seed", "sdpa", True]
    assert (without["attends_to_future"], without["layer0_mask"]) == (False, "bool (1, 1, 8, 8)")
    assert (with_cache["attends_to_future"], with_cache["layer0_mask"]) == (True, "None")
    assert without["layer0_is_causal"] is False and with_cache["layer0_is_causal"] is False


@pytest.mark.slow
def test_the_matrix_child_measures_an_old_release(root):
    """compat_matrix.py's child on transformers 4.57.6 (a throw-away environment, made once in
    .compat-envs/ and reused): attnviz's measuring code imports there and yields verdicts, and they
    are the committed ones. About a minute the first time (pip), 15 s after."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from compat_matrix import measure

    base = Path(ROOT / ".compat-envs")
    base.mkdir(exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        rows = measure(OLD_RELEASE, base)
    seed_rows = [r for r in rows if r["patch"] in ("seed", "state_later")]
    assert seed_rows and all(isinstance(r["attends_to_future"], bool) for r in seed_rows)
    assert all(r["error"] is None for r in seed_rows)
    assert rows == [r for r in _rows(root) if r["transformers"] == OLD_RELEASE]


def _envs_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("envs", ROOT / "scripts" / "envs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_committed_matrix_names_the_run_that_measured_it(root):
    """Chapters 6 and 10 name script, date and machine in their prose from book/data/measured.json."""
    measured = json.loads((root / "book" / "data" / "measured.json").read_text(encoding="utf-8"))
    for name, script in {"compat.json": "compat_matrix.py", "recipes.json": "recipe_matrix.py"}.items():
        run = measured[name]
        rows = json.loads((root / "book" / "data" / name).read_text(encoding="utf-8"))
        assert run["script"] == f"scripts/{script}"
        assert run["releases"] == sorted({r["transformers"] for r in rows}, key=Version), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run["date"]) and "CPUs" in run["machine"]


def test_a_matrix_run_records_its_date_machine_and_releases_beside_its_output(tmp_path):
    envs = _envs_module()
    (tmp_path / "measured.json").write_text('{"other.json": {"script": "kept"}}\n', encoding="utf-8")
    record = envs.record_measurement(tmp_path / "compat.json", "scripts/compat_matrix.py", 142.6, ["5.2.0", "5.24.0"])
    written = json.loads((tmp_path / "measured.json").read_text(encoding="utf-8"))
    assert written == {"other.json": {"script": "kept"}, "compat.json": record}
    assert record["releases"] == ["5.2.0", "5.24.0"] and record["seconds"] == 143
    assert record["torch"] == torch.__version__ and record["script"] == "scripts/compat_matrix.py"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["date"])
    assert record["machine"].endswith(f"{os.cpu_count()} CPUs")
