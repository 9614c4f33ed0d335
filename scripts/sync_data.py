"""Copy the data files the chapters read into the package, so a pip-installed attnviz has them.

Chapters read `book/data/*.json` (chapter 6's compatibility table, chapter 10's recipe matrix, the older transformers
source chapters 1 and 6 quote) and `benchmarks/results/*.json` (chapter 13). Those files stay
where the scripts write them (the source of truth); Colab and any other pip install of attnviz
get the copies under `src/attnviz/data/`, which `attnviz.repo_file` falls back to. Never edit the
copies: rerun this script.

    python scripts/sync_data.py          # refresh src/attnviz/data from the sources
    python scripts/sync_data.py --check  # exit 1 and list what is out of step
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = ROOT / "src" / "attnviz" / "data"
# what the chapters read, relative to the repository root (globs allowed)
SHIPPED = ["book/data/*.json", "benchmarks/results/*.json"]
# results no chapter reads: the mutation-testing record is for the developers, not the book
NOT_SHIPPED = {"benchmarks/results/mutation.json"}


def sources() -> list[str]:
    """The shipped files, as paths relative to the repository root."""
    found = (str(path.relative_to(ROOT)) for pattern in SHIPPED for path in ROOT.glob(pattern))
    return sorted(path for path in found if path not in NOT_SHIPPED)


def out_of_step() -> list[str]:
    """What differs between the sources and the package copies (empty when in step)."""
    wanted = sources()
    problems = []
    for relative in wanted:
        copy = PACKAGE_DATA / relative
        if not copy.is_file():
            problems.append(f"missing: src/attnviz/data/{relative}")
        elif copy.read_bytes() != (ROOT / relative).read_bytes():
            problems.append(f"differs from {relative}: src/attnviz/data/{relative}")
    for copy in sorted(p for p in PACKAGE_DATA.rglob("*") if p.is_file()):
        relative = str(copy.relative_to(PACKAGE_DATA))
        if relative not in wanted:
            problems.append(f"no longer has a source: src/attnviz/data/{relative}")
    return problems


def sync() -> None:
    wanted = sources()
    for relative in wanted:
        copy = PACKAGE_DATA / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((ROOT / relative).read_bytes())
    for copy in sorted(p for p in PACKAGE_DATA.rglob("*") if p.is_file()):
        if str(copy.relative_to(PACKAGE_DATA)) not in wanted:
            copy.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report what is out of step; change nothing")
    args = parser.parse_args()
    if args.check:
        problems = out_of_step()
        for problem in problems:
            print(problem)
        if problems:
            print("the package's data copies are stale: run `make sync` (scripts/sync_data.py)")
        return 1 if problems else 0
    sync()
    print(f"copied {len(sources())} file(s) into src/attnviz/data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
