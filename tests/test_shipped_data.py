"""The data chapters 6 and 13 read ship inside the package, identical to the repository's files.

A pip-installed attnviz (Colab) has no book/ or benchmarks/; `attnviz.repo_file` then falls back
to the copies in src/attnviz/data, which scripts/sync_data.py writes. tests/test_notebooks.py
runs every chapter against such an install.
"""

import shutil
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
try:
    import sync_data
finally:
    sys.path.pop(0)


def test_the_package_copies_match_the_repository_files():
    assert "book/data/compat.json" in sync_data.sources()
    assert "benchmarks/results/scaling_cpu.json" in sync_data.sources()
    assert sync_data.out_of_step() == [], "run `make sync` (scripts/sync_data.py)"


def test_pyproject_ships_the_copies():
    assert '"data/**/*.json"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("change", ["edit", "delete", "stray"])
def test_the_check_flags_a_stale_copy(tmp_path, monkeypatch, change):
    copies = tmp_path / "data"
    shutil.copytree(sync_data.PACKAGE_DATA, copies)
    monkeypatch.setattr(sync_data, "PACKAGE_DATA", copies)
    assert sync_data.out_of_step() == []
    if change == "edit":
        (copies / "book" / "data" / "compat.json").write_text("[]\n")
    elif change == "delete":
        (copies / "benchmarks" / "results" / "gpu.json").unlink()
    else:
        (copies / "benchmarks" / "results" / "old.json").write_text("{}\n")
    assert sync_data.out_of_step()
    sync_data.sync()
    assert sync_data.out_of_step() == []
