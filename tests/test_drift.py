"""The drift watch's parts (scripts/drift.py), on real pytest runs, a real kernel and the real compat data.

The whole check (`make drift`) builds an environment and runs the book: minutes, so it runs weekly
on GitHub and by hand, not here. These tests check each part it is made of.
"""

import importlib.util
import json
import subprocess
import sys

import nbformat
from conftest import ROOT

spec = importlib.util.spec_from_file_location("drift", ROOT / "scripts" / "drift.py")
drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drift)


def test_versions_newer_than_the_pin_oldest_first():
    available = ["5.23.0", "5.24.0", "5.26.0", "5.25.1", "4.57.6"]
    versions, why = drift.versions_to_check("5.24.0", available)
    assert versions == ["5.25.1", "5.26.0"]
    assert "2 release(s) newer than the pinned 5.24.0" in why


def test_without_a_newer_release_the_newest_is_checked():
    versions, why = drift.versions_to_check("5.24.0", ["5.23.0", "5.24.0"])
    assert versions == ["5.24.0"]
    assert why.startswith("no release newer than the pinned 5.24.0")


def test_every_drift_test_exists():
    for test in drift.DRIFT_TESTS:
        assert (ROOT / test).is_file(), test


def test_failed_tests_are_read_from_a_real_junit_file(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "def test_holds():\n    assert 1 + 1 == 2\n\n\ndef test_changed():\n    assert 'causal' == 'bidirectional'\n"
    )
    junit = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_sample.py"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    run, failures = drift.failed_tests(junit)
    assert run == 2
    assert [f["test"] for f in failures] == ["test_sample.py::test_changed"]
    assert "AssertionError" in failures[0]["message"] and "bidirectional" in failures[0]["message"]


def test_compat_changes_name_the_verdicts_that_moved():
    pinned = json.loads((ROOT / "book" / "data" / "compat.json").read_text())
    rows = [dict(r) for r in pinned if r["transformers"] == drift.pinned_transformers()]
    assert rows and drift.compat_changes(rows, rows) == []
    moved = [dict(r) for r in rows]
    target = next(r for r in moved if (r["patch"], r["backend"], r["use_cache"]) == ("seed", "eager", True))
    target["attends_to_future"] = not target["attends_to_future"]
    target["transformers"] = "9.9.9"
    changes = drift.compat_changes(rows, moved)
    assert [(c["patch"], c["backend"], c["use_cache"]) for c in changes] == [("seed", "eager", True)]
    assert changes[0]["pinned"]["attends_to_future"] != changes[0]["new"]["attends_to_future"]
    # the mask layer 0 receives is evidence the book quotes: a change in it is drift too
    masked = [dict(r) for r in rows]
    next(r for r in masked if r["patch"] == "seed" and r["backend"] == "sdpa")["layer0_mask"] = "bool (1, 1, 8, 8)"
    assert [(c["patch"], c["backend"]) for c in drift.compat_changes(rows, masked)] == [("seed", "sdpa")]
    # a row that disappears is a change too
    gone = drift.compat_changes(rows, moved[1:])[-1]
    assert (gone["patch"], gone["backend"], gone["use_cache"], gone["new"]) == (
        moved[0]["patch"],
        moved[0]["backend"],
        moved[0]["use_cache"],
        None,
    )


def test_older_releases_are_re_measured_and_compared_whole(monkeypatch, tmp_path):
    committed = json.loads((ROOT / "book" / "data" / "compat.json").read_text())
    pin = drift.pinned_transformers()
    older = sorted({r["transformers"] for r in committed} - {pin})
    measured = []

    def measure(version, base):
        measured.append(version)
        rows = [dict(r) for r in committed if r["transformers"] == version]
        if version == older[0]:
            rows[0]["error"] = "TypeError: the child no longer imports"
        if version == older[1]:
            raise SystemExit(f"transformers {version}: the measurement failed")
        return rows

    monkeypatch.setattr(drift, "measure", measure)
    changes = drift.older_rows_changes(committed, pin, tmp_path)
    assert sorted(measured) == older  # every older release, never the pin
    assert [(c["transformers"], c["row"]) for c in changes] == [
        (older[0], " / ".join(str(committed_row[k]) for k in drift.ROW_KEY))
        for committed_row in [next(r for r in committed if r["transformers"] == older[0])]
    ] + [(older[1], "(all)")]
    report = drift.render([], pin, "checking nothing", changes)
    assert "the committed table no longer regenerates" in report and "the child no longer imports" in report


def test_a_chapter_whose_claim_fails_is_reported_with_the_claim(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("x = 2"),
        nbformat.v4.new_code_cell("print('checking')\nassert x == 3, 'the claim changed'"),
    ]
    path = tmp_path / "99_claims.ipynb"
    nbformat.write(nb, path)
    result = drift.run_chapter(path)
    assert result["ok"] is False and result["cell"] == 2
    assert result["claim"] == "assert x == 3, 'the claim changed'"
    assert result["error"] == "AssertionError: the claim changed"
    nb.cells[2].source = "assert x == 2"
    nbformat.write(nb, path)
    assert drift.run_chapter(path) == {"chapter": "99_claims.ipynb", "ok": True}


def test_report_says_what_changed():
    results = [
        {
            "transformers": "9.9.9",
            "torch": "2.13.0+cpu",
            "tests": {"run": 10, "failed": [{"test": "tests/test_patch.py::test_x", "message": "AssertionError"}]},
            "chapters": [
                {"chapter": "06_patch_across_versions.ipynb", "ok": False, "cell": 7, "claim": "assert a", "error": "E"}
            ],
            "compat": [
                {
                    "patch": "attnviz",
                    "backend": "eager",
                    "use_cache": False,
                    "pinned": {"refused": False},
                    "new": {"refused": True},
                }
            ],
            "drift": True,
        }
    ]
    report = drift.render(results, "5.24.0", "checking the requested release(s) 9.9.9")
    assert "## transformers 9.9.9 (torch 2.13.0+cpu): DRIFT" in report
    assert "`tests/test_patch.py::test_x`" in report
    assert "06_patch_across_versions.ipynb, cell 7: `assert a`" in report
    assert "attnviz / eager / use_cache=False: 5.24.0 {'refused': False} -> 9.9.9 {'refused': True}" in report
    assert "Older releases in book/data/compat.json: not re-measured" in report


def test_make_drift_runs_the_script_and_installs_nothing_itself():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndrift:")[1].split("\n\n")[0]
    assert "scripts/drift.py" in recipe and "DRIFT_VERSIONS" in recipe
    assert "pip install" not in recipe  # the environment is the script's own, never .venv


def test_recipe_changes_name_the_cells_that_moved():
    import recipe_matrix

    row = {
        "recipe": "seed",
        "source": "attnviz:src/attnviz/state.py",
        "transformers": "5.24.0",
        "backend": "eager",
        "use_cache": False,
        "batch": 1,
        "attends_to_future": True,
        "uses_positions": False,
        "padding_masked": None,
        "error": None,
    }
    assert recipe_matrix.recipe_changes([row], [dict(row, transformers="9.9.9")]) == []
    causal = dict(row, transformers="9.9.9", attends_to_future=False, uses_positions=True)
    (change,) = recipe_matrix.recipe_changes([row], [causal])
    assert change["cell"] == ("seed", "eager", False, 1)
    assert change["pinned"]["attends_to_future"] is True and change["new"]["attends_to_future"] is False
    # an error is a verdict, its text is not; a vanished cell is a change
    failing = dict(row, error="TypeError: x", attends_to_future=None, uses_positions=None)
    assert recipe_matrix.recipe_changes([failing], [dict(failing, error="TypeError: y")]) == []
    assert recipe_matrix.recipe_changes([row], [])[0]["new"] is None
    report = drift.render(
        [
            {
                "transformers": "9.9.9",
                "torch": "2.13.0",
                "tests": {"run": 1, "failed": []},
                "chapters": None,
                "compat": [],
                "recipes": [change],
                "drift": True,
            }
        ],
        "5.24.0",
        "checking 9.9.9",
    )
    assert "- Recipe cells: 1 differ from 5.24.0's rows in book/data/recipes.json." in report
    assert "  - seed / eager / False / 1: 5.24.0 {" in report


def test_the_report_says_the_chinese_edition_is_covered_by_code_identity():
    chinese = drift.chinese_edition()
    assert chinese["chapters"] >= 10 and chinese["differ"] == [], chinese
    report = drift.render([], "5.24.0", "checking", chinese=chinese)
    assert f"covered by code identity: its {chinese['chapters']} chapters' code cells" in report
    broken = drift.render([], "5.24.0", "checking", chinese={"chapters": 11, "differ": ["04_rope.ipynb"]})
    assert "NOT covered: the code of 04_rope.ipynb differs" in broken
