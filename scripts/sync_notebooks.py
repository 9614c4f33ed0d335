"""Keep every chapter's setup cell in step with _config.yml, and notebooks free of outputs.

The repository URL lives in one place, `_config.yml` (`repository.url`). Colab opens a
chapter without the rest of the repository, so each chapter's first code cell installs
attnviz from that URL when it runs on Colab. This script writes that cell into every
notebook listed in notebooks/ and strips outputs and execution counts.

    python scripts/sync_notebooks.py          # rewrite the notebooks
    python scripts/sync_notebooks.py --check  # exit 1 and list what is out of step
    python scripts/sync_notebooks.py --check path/to/chapter.ipynb  # only these notebooks
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# the page shows nothing of the setup cell: not the installer, and not its output (a dict of
# versions behind an empty "Show code cell outputs" toggle was the first thing on every chapter;
# the intro prints the versions the book was built with). It still runs, in the book and on Colab.
SETUP_TAGS = ("remove-cell",)
SUPERSEDED_TAGS = ("remove-input", "hide-output", "hide-input")
SETUP_MARKER = "# attnviz setup cell"


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def pinned_transformers() -> str:
    """``transformers==X.Y.Z`` for the pin the book was checked against (attnviz.PINNED_VERSIONS)."""
    import attnviz

    return f"transformers=={attnviz.PINNED_VERSIONS['transformers']}"


def setup_source() -> str:
    """The first code cell of every chapter."""
    # laid out as `ruff format` lays it out (notebooks/ruff.toml), so the two never fight
    return f"""{SETUP_MARKER}: on Colab, install attnviz and the pinned transformers.
import sys

if "google.colab" in sys.modules:
    import subprocess

    package = "attnviz @ git+{repository_url()}.git"
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "{pinned_transformers()}", package], check=True)

import attnviz

attnviz.versions()"""


def notebooks() -> list[Path]:
    from booklayout import chapters  # scripts/booklayout.py, next to this script

    return chapters()


def synced(nb: dict) -> dict:
    """Return a copy of the notebook with the setup cell rewritten and outputs stripped."""
    nb = json.loads(json.dumps(nb))
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    if not code_cells or SETUP_MARKER not in "".join(code_cells[0]["source"]):
        raise SystemExit(f"the first code cell must start with {SETUP_MARKER!r}")
    setup = code_cells[0]
    setup["source"] = setup_source().splitlines(keepends=True)
    metadata = setup.setdefault("metadata", {})
    tags = metadata["tags"] = [t for t in metadata.get("tags", []) if t not in SUPERSEDED_TAGS]
    for tag in SETUP_TAGS:
        if tag not in tags:
            tags.append(tag)
    for cell in code_cells:
        cell["outputs"] = []
        cell["execution_count"] = None
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report, do not write")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to sync (default: every chapter)")
    args = parser.parse_args()
    paths = [path.resolve() for path in args.paths] or notebooks()
    stale = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = dump(synced(json.loads(text)))
        if new != text:
            stale.append(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("out of step with _config.yml, or carrying outputs (run `make sync`):", *stale, sep="\n  ")
        return 1
    if not args.check:
        print(f"synced {len(paths)} notebooks" + (f", rewrote {len(stale)}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
