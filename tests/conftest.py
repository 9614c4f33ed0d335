import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HTML = ROOT / "_build" / "html"

# scripts/booklayout.py reads _toc.yml: the one place tests learn which pages and chapters exist
sys.path.insert(0, str(ROOT / "scripts"))
from book_cache import refresh as refresh_book_cache  # noqa: E402
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
    from the jupyter cache when neither their code nor the attnviz package has changed (the Chinese
    chapters' code is the English code, so they come from the English executions).
    """
    refresh_book_cache()
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


def unpatched_attentions(model, input_ids, *, bidirectional: bool = False, no_rope: bool = False) -> tuple:
    """The weights of one of the four variants, computed without attnviz's patches or capture.

    An eager model's own ``output_attentions``, with the variant made by its inputs alone: a 4D
    additive mask written here (all zeros lets every token see every other: bidirectional), and
    position 0 everywhere, which makes RoPE's rotation the identity (NoRoPE, for plain RoPE whose
    cos scale is 1). A 4D mask is used as given, so transformers does not read the repeated
    position 0 as many packed one-token sequences. Tests compare attnviz's results with this so
    that a broken patch or capture cannot agree with itself.
    """
    import torch

    assert model.config._attn_implementation == "eager", "the reference needs an eager model"
    batch, seq = input_ids.shape
    blocked = torch.zeros(seq, seq, dtype=torch.bool) if bidirectional else torch.ones(seq, seq).triu(1).bool()
    mask = torch.zeros(batch, 1, seq, seq).masked_fill(blocked, torch.finfo(torch.float32).min)
    position_ids = torch.zeros_like(input_ids) if no_rope else torch.arange(seq).expand(batch, -1)
    with torch.no_grad():
        return model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, output_attentions=True, use_cache=False
        ).attentions
