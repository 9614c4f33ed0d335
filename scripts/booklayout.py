"""The book's pages, read from _toc.yml: the one place scripts and tests learn the chapter list."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def toc_pages() -> list[str]:
    """Every page of the book in reading order, as _toc.yml names them (no suffix)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


def chapters() -> list[Path]:
    """The notebook chapters in reading order."""
    return [ROOT / f"{page}.ipynb" for page in toc_pages() if page.startswith("notebooks/")]
