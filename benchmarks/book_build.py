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


def timed_build() -> dict:
    """Seconds for each edition, English first (it fills the cache the Chinese build reads)."""
    times = {}
    for edition, build in (("en", build_book.build_english), ("zh", build_book.build_chinese)):
        start = time.perf_counter()
        result = build([], capture_output=True, text=True)
        if result != 0:
            raise SystemExit(f"the {edition} build failed")
        times[edition] = time.perf_counter() - start
    return times


def main() -> int:
    shutil.rmtree(ROOT / "_build", ignore_errors=True)
    load = os.getloadavg()[0]
    cold, warm = timed_build(), timed_build()
    added = {name: t["zh"] / t["en"] for name, t in (("cold", cold), ("warm", warm))}
    print(f"book build, English only: cold {cold['en']:.1f} s (executes every chapter), warm {warm['en']:.1f} s")
    for name, t in (("cold", cold), ("warm", warm)):
        verdict = "OK" if added[name] <= 0.2 else "MISSED"
        print(f"  + Chinese edition, {name}: {t['zh']:.1f} s ({100 * added[name]:.0f}%; target <= 20%) {verdict}")
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
        "warm_s": warm["en"],
        "zh_cold_s": cold["zh"],
        "zh_warm_s": warm["zh"],
        "load_average_at_start": load,
    }
    print(f"wrote {write('book_build', rows, extra)}")
    return 0 if slowest["seconds"] <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
