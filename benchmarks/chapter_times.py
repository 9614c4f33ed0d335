"""Execution time of every chapter in a fresh kernel, as the book build runs them.

Target (issues 4 and 5): chapters 2-4 under 60 s, chapters 5-7 under 90 s, on 2 CPU cores.

    .venv/bin/python benchmarks/chapter_times.py [notebooks/0*.ipynb ...]
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    print(f"{'chapter':34} {'seconds':>8}")
    total = 0.0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{path.name:34} {seconds:8.1f}")
    print(f"{'total':34} {total:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
