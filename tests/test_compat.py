"""book/data/compat.json, written by scripts/compat_matrix.py, and what the package declares from it."""

import json
import re

from packaging.version import Version

import attnviz.patch
from attnviz.state import compat_rows

KEYS = {"transformers", "patch", "backend", "attends_to_future", "uses_positions", "refused", "error"}


def _rows(root):
    return json.loads((root / "book" / "data" / "compat.json").read_text(encoding="utf-8"))


def test_matrix_covers_six_versions_three_patches_two_backends(root):
    rows = _rows(root)
    assert all(set(row) == KEYS for row in rows)
    versions = {row["transformers"] for row in rows}
    assert len(versions) >= 6
    assert {(r["patch"], r["backend"]) for r in rows} == {
        (p, b) for p in ("seed", "state_later", "attnviz") for b in ("eager", "sdpa")
    }
    assert len(rows) == 6 * len(versions)


def test_attnviz_works_or_refuses_and_pyproject_declares_the_floor(root):
    rows = [r for r in _rows(root) if r["patch"] == "attnviz"]
    working = sorted({Version(r["transformers"]) for r in rows if r["attends_to_future"]})
    for row in rows:
        assert row["attends_to_future"] is True or row["refused"], row  # never silently causal
    assert working[0] == attnviz.patch.NATIVE_IS_CAUSAL
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'"transformers>={working[0].major}\.{working[0].minor}"', pyproject)


def test_live_rows_match_the_committed_rows_for_this_transformers(root):
    import transformers

    committed = [r for r in _rows(root) if r["transformers"] == transformers.__version__]
    assert committed, f"compat.json has no rows for transformers {transformers.__version__}"
    assert compat_rows() == committed
