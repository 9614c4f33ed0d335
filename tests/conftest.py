import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HTML = ROOT / "_build" / "html"

# scripts/booklayout.py reads _toc.yml: the one place tests learn which pages and chapters exist
sys.path.insert(0, str(ROOT / "scripts"))
from booklayout import chapters, toc_pages, zh_pages  # noqa: E402

PAGES = toc_pages()
CHAPTERS = chapters()
# the Chinese edition is zh/ of the site: its pages as the site serves them (zh/book/intro, ...)
ZH_PAGES = [f"zh/{page}" for page in zh_pages()]
SITE_PAGES = PAGES + ZH_PAGES
EDITIONS = ["", "zh/"]  # URL prefixes of the English and the Chinese edition


@pytest.fixture(scope="session")
def build_log() -> str:
    """Build both editions once per test run, as `make book` does; return the builds' output.

    --all re-reads every page, so every warning is emitted again; executed notebooks still come
    from the jupyter cache when their code has not changed (the Chinese chapters' code is the
    English code, so they come from the English executions).
    """
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_book.py"), "--all"],
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
