"""Drop the book's execution cache when the attnviz package changed since it was filled.

jupyter-cache (``execute_notebooks: cache`` in _config.yml) re-executes a chapter only when the
chapter's own code changes. The chapters' outputs also depend on the package they import: a change
to ``attnviz.plot`` changes every figure, yet the cache would keep serving the old ones. So the
cache records a hash of the package (its Python files and package data) and of the pins, and this
script empties the cache, and Sphinx's saved environments (else Sphinx would not re-read the
unchanged chapters at all), when that hash no longer matches. `make book` and the test suite's
build run it first.

    python scripts/book_cache.py    # prints what it did
"""

import hashlib
import shutil
import sys

from booklayout import ROOT  # scripts/booklayout.py, next to this script

CACHE = ROOT / "_build" / ".jupyter_cache"
STAMP = ROOT / "_build" / ".jupyter_cache.attnviz-hash"
# Sphinx's saved environments of the two editions. Sphinx re-reads, and so re-executes, only the
# chapters whose source changed; with these kept, an emptied cache changed nothing: a package
# change left every other chapter's old outputs on the site. They go with the cache.
ENVIRONMENTS = [ROOT / "_build" / ".doctrees", ROOT / "_build" / "zh" / "_build" / ".doctrees"]


def package_hash() -> str:
    """sha256 over every file of src/attnviz (code and package data) and the requirements."""
    digest = hashlib.sha256()
    files = sorted(p for p in (ROOT / "src" / "attnviz").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [ROOT / "requirements.txt"]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def refresh() -> str:
    """Empty the cache if the package changed; return a one-line account."""
    current = package_hash()
    recorded = STAMP.read_text(encoding="ascii").strip() if STAMP.is_file() else None
    if recorded == current:
        return "book cache: attnviz unchanged, executed chapters are reused"
    dropped = CACHE.is_dir()
    for folder in [CACHE, *ENVIRONMENTS]:
        if folder.is_dir():
            shutil.rmtree(folder)
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(current + "\n", encoding="ascii")
    if dropped:
        return "book cache: attnviz changed since the chapters were executed; emptied it, every chapter runs again"
    return "book cache: none yet"


if __name__ == "__main__":
    print(refresh())
    sys.exit(0)
