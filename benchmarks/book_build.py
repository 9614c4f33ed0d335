"""Book build time: cold (no _build, nothing cached) and warm (unchanged book), for the English
edition and for the Chinese one built after it (scripts/build_book.py, what `make book` runs), and
each chapter's execution time in a fresh kernel. Targets: no chapter over 60 s, so a reader on
Binder or Colab waits less than a minute per chapter; the Chinese edition adds at most 20% to
the build (it executes nothing: its code cells are the English ones, served from the cache).

    .venv/bin/python benchmarks/book_build.py
Writes benchmarks/results/book_build.json. It deletes and rebuilds _build.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_book  # noqa: E402  scripts/build_book.py: the build `make book` runs


def timed(build) -> float:
    start = time.perf_counter()
    if build() != 0:
        raise SystemExit("a book build failed: run scripts/build_book.py to see why")
    return time.perf_counter() - start


def both(extra: list[str]) -> dict:
    code, times = build_book.build_both(extra, quiet=True)
    if code != 0:
        raise SystemExit("a book build failed: run scripts/build_book.py to see why")
    return times


def main() -> int:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    shutil.rmtree(ROOT / "_build", ignore_errors=True)
    load = os.getloadavg()[0]
    # cold: nothing cached, so the Chinese build waits for the English one to fill the cache; the
    # English part is exactly an English-only cold build
    cold = both([])
    # warm, nothing changed: English only, then both (the Chinese build is skipped: its inputs are unchanged)
    warm_en = timed(lambda: build_book.build_english([], **quiet))
    warm = both([])
    # warm, every page re-read (what the tests' build does): the Chinese build runs, beside the English one
    all_en = timed(lambda: build_book.build_english(["--all"], **quiet))
    every = both(["--all"])
    figures = {
        "cold": (cold["en"], cold["all"]),
        "warm": (warm_en, warm["all"]),
        "warm_all_pages": (all_en, every["all"]),
    }
    print("book build, English only -> both editions (target: the Chinese edition adds <= 20%):")
    for name, (english, total) in figures.items():
        added = total / english - 1
        verdict = "OK" if added <= 0.2 else "MISSED"
        print(f"  {name:15} {english:7.1f} s -> {total:7.1f} s ({100 * added:+.0f}%) {verdict}")
    rows = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        rows.append({"chapter": path.stem, "seconds": time.perf_counter() - start})
        print(f"  {path.stem:32} {rows[-1]['seconds']:6.1f} s")
    slowest = max(rows, key=lambda r: r["seconds"])
    print(
        f"slowest chapter: {slowest['chapter']} ({slowest['seconds']:.1f} s; target <= 60 s) "
        + ("OK" if slowest["seconds"] <= 60 else "MISSED")
    )
    extra = {
        "cold_s": cold["en"],
        "warm_s": warm_en,
        "both_editions_s": {name: total for name, (_, total) in figures.items()},
        "english_only_s": {name: english for name, (english, _) in figures.items()},
        "load_average_at_start": load,
    }
    print(f"wrote {write('book_build', rows, extra)}")
    return 0 if slowest["seconds"] <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
