"""Find files of the attnviz repository (committed data, benchmark results) from a chapter."""

from pathlib import Path

# scripts/sync_data.py copies the files the chapters read here, under their repository paths
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def repo_file(relative: str) -> Path | None:
    """The repository file ``relative`` (e.g. ``"book/data/compat.json"``), or None if not found.

    Chapters run in ``notebooks/``; an editable install also knows the repository root. A chapter
    opened alone (say on Colab) gets the copy shipped inside the package, when there is one.
    """
    candidates = [
        Path.cwd() / ".." / relative,
        Path.cwd() / relative,
        Path(__file__).resolve().parents[2] / relative,
        PACKAGE_DATA / relative,
    ]
    return next((path.resolve() for path in candidates if path.is_file()), None)
