import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HTML = ROOT / "_build" / "html"

# scripts/booklayout.py reads _toc.yml: the one place tests learn which pages and chapters exist
sys.path.insert(0, str(ROOT / "scripts"))
from booklayout import chapters, toc_pages  # noqa: E402

PAGES = toc_pages()
CHAPTERS = chapters()


@pytest.fixture(scope="session")
def build_log() -> str:
    """Build the book once per test run, as `make book` does; return the build's output.

    --all re-reads every page, so every warning is emitted again; executed notebooks still come
    from the jupyter cache when their code has not changed.
    """
    result = subprocess.run(
        [str(VENV_BIN / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going", "--all"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    return log


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
