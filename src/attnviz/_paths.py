"""Find files of the attnviz repository (committed data, benchmark results) from a chapter."""

from pathlib import Path


def repo_file(relative: str) -> Path | None:
    """The repository file ``relative`` (e.g. ``"book/data/compat.json"``), or None if not found.

    Chapters run in ``notebooks/``; an editable install also knows the repository root. A chapter
    opened alone (say on Colab) finds nothing and should say so rather than fail obscurely.
    """
    candidates = [Path.cwd() / ".." / relative, Path.cwd() / relative, Path(__file__).resolve().parents[2] / relative]
    return next((path.resolve() for path in candidates if path.is_file()), None)
