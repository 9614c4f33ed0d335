"""Book build time: cold (no _build, nothing cached) and warm (unchanged book), and each chapter's
execution time in a fresh kernel. Target: no chapter over 60 s, so a reader on Binder or Colab
waits less than a minute per chapter.

    .venv/bin/python benchmarks/book_build.py
Writes benchmarks/results/book_build.json. It deletes and rebuilds _build.
"""

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
BUILD = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going"]


def timed_build() -> float:
    start = time.perf_counter()
    subprocess.run(BUILD, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    shutil.rmtree(ROOT / "_build", ignore_errors=True)
    cold, warm = timed_build(), timed_build()
    print(f"book build: cold {cold:.1f} s (executes every chapter), warm {warm:.1f} s (unchanged book)")
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
    print(f"wrote {write('book_build', rows, {'cold_s': cold, 'warm_s': warm})}")
    return 0 if slowest["seconds"] <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
