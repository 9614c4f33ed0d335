"""The book's pages, read from _toc.yml: the one place scripts and tests learn the chapter list.

The Chinese edition lives under zh/ with its own zh/_toc.yml (generated from _toc.yml by
scripts/translations.py); its pages have the same names inside zh/.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZH = ROOT / "zh"


def toc_pages(toc_path: Path | None = None) -> list[str]:
    """Every page of a book in reading order, as its _toc.yml names them (no suffix)."""
    import yaml

    toc = yaml.safe_load((toc_path or ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


def chapters() -> list[Path]:
    """The notebook chapters in reading order."""
    return [ROOT / f"{page}.ipynb" for page in toc_pages() if page.startswith("notebooks/")]


def zh_pages() -> list[str]:
    """The Chinese edition's pages, named inside zh/ (``book/intro``, ``notebooks/00_...``)."""
    return toc_pages(ZH / "_toc.yml")
