"""Bidirectional recipes in the wild: run each published recipe on many transformers releases.

For each release in RELEASES this script makes a throw-away environment (scripts/envs.py: it
shares .venv's torch, and .venv is never changed), and for each recipe of attnviz.recipes.RECIPES
that the release falls under (the recipe's supported range, plus the nearest release of the list
on either side of it) runs every cell: backend (eager, sdpa, flex_attention where the release has
it) x use_cache (off, on) x batch (1, or 2 with padding). A recipe that comes from PyPI (llm2vec,
gritlm, arc-state) is installed with --no-deps into a folder of its own, put on PYTHONPATH.

Each child process first checks a plain LlamaModel (it must come out causal, position-using and
padding-masked); a child that fails, or an error raised by attnviz's own code, stops the script:
only an error raised by a recipe's own code is recorded as a verdict. flex_attention runs with
TORCHDYNAMO_DISABLE=1 (uncompiled: the same masks, minutes faster on CPU).

Writes book/data/recipes.json (the rows) and book/data/recipe_quotes.json (the lines of each
recipe's installed code that make it bidirectional, quoted with attnviz.quote in its environment).

    .venv/bin/python scripts/recipe_matrix.py [--versions 5.24.0 ...] [--keep-envs .recipe-envs]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from envs import environment, packages, record_measurement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "book" / "data" / "recipes.json"
QUOTES = ROOT / "book" / "data" / "recipe_quotes.json"
# Why each release is here: llm2vec 0.1.6's last and first-outside (4.40.2, 4.41.0); llm2vec
# 0.2.3's (4.44.2, 4.45.0); the last release that calls _update_causal_mask (4.52.4) and the
# first that does not (4.53.0); Gemma 3's flag absent / present (4.55.4, 4.56.2); the 4.x line's
# last (4.57.6); before and after native is_causal (5.1.0, 5.2.0); Gemma 4's flag as reported in
# huggingface/transformers#46077 (5.8.1) and the next release (5.9.0); the pin (5.24.0).
RELEASES = [
    "4.40.2",
    "4.41.0",
    "4.44.2",
    "4.45.0",
    "4.52.4",
    "4.53.0",
    "4.55.4",
    "4.56.2",
    "4.57.6",
    "5.1.0",
    "5.2.0",
    "5.8.1",
    "5.9.0",
    "5.24.0",
]
VERDICT_KEYS = ("attends_to_future", "uses_positions", "padding_masked", "error")


def plan(recipe, releases: list[str]) -> list[str]:
    """The releases to run ``recipe`` on: its supported range, and the nearest release outside each end."""
    ordered = sorted(releases, key=Version)
    low, high = (Version(v) if v else None for v in recipe.supported)
    inside = [v for v in ordered if (low is None or Version(v) >= low) and (high is None or Version(v) <= high)]
    chosen = set(inside)
    below = [v for v in ordered if low is not None and Version(v) < low]
    above = [v for v in ordered if high is not None and Version(v) > high]
    if below and recipe.outside_below:
        chosen.add(below[-1])
    if above:
        chosen.add(above[0])
    return [v for v in ordered if v in chosen]


def child(names: list[str]) -> int:
    """Run in a release's environment: what ``python -m attnviz.recipes`` prints."""
    from attnviz.recipes import run_here

    print(json.dumps(run_here(names)))
    return 0


def measure_release(version: str, python: Path, names: list[str], base: Path) -> dict:
    """Every cell of ``names`` on ``version``, in its environment (``python``): {rows, quotes, backends}.

    Recipes that need the same packages run in one child process. Raises SystemExit when a child
    fails: that is a harness or environment failure, never a verdict.
    """
    from attnviz.recipes import RECIPES, HarnessError, rows_in_subprocess

    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        groups.setdefault(RECIPES[name].packages, []).append(name)
    result = {"rows": [], "quotes": {}, "backends": None}
    for requirements, group in groups.items():
        path = [str(ROOT / "src")] + ([str(packages(list(requirements), base))] if requirements else [])
        try:
            found = rows_in_subprocess(group, python=str(python), env={"PYTHONPATH": os.pathsep.join(path)})
        except HarnessError as failure:
            print(failure, file=sys.stderr)
            raise SystemExit(
                f"transformers {version}, recipes {group}: the measuring child failed (see above)"
            ) from None
        if found["transformers"] != version:
            raise SystemExit(f"the environment for {version} runs transformers {found['transformers']}")
        result["rows"].extend(found["rows"])
        result["quotes"].update(found["quotes"])
        result["backends"] = found["backends"]
    return result


def recipe_changes(pinned_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The cells whose verdicts differ (an error counts as a verdict, its text does not), or that vanished."""

    def key(row):
        return (row["recipe"], row["backend"], row["use_cache"], row["batch"])

    def verdicts(row):
        return {k: bool(row[k]) if k == "error" else row[k] for k in VERDICT_KEYS}

    pinned = {key(r): verdicts(r) for r in pinned_rows}
    changes = []
    for row in new_rows:
        if key(row) in pinned and pinned[key(row)] != verdicts(row):
            changes.append({"cell": key(row), "pinned": pinned[key(row)], "new": verdicts(row), "error": row["error"]})
    for missing in sorted(set(pinned) - {key(r) for r in new_rows}, key=str):
        changes.append({"cell": missing, "pinned": pinned[missing], "new": None, "error": None})
    return changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=RELEASES)
    parser.add_argument("--keep-envs", type=Path, help="reuse environments in this folder instead of a temporary one")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    sys.path.insert(0, str(ROOT / "src"))  # attnviz.recipes names the recipes; .venv may have another attnviz
    from attnviz.recipes import RECIPES, ROW_KEYS

    started = time.perf_counter()
    # ranges are read against the whole list, so --versions picks cells without moving them
    everything = sorted(set(RELEASES) | set(args.versions), key=Version)
    schedule = {name: plan(recipe, everything) for name, recipe in RECIPES.items()}
    rows, quotes = [], {}
    with tempfile.TemporaryDirectory(prefix="attnviz-recipes-") as scratch:
        base = args.keep_envs or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        for version in sorted(args.versions, key=Version):
            names = [name for name, releases in schedule.items() if version in releases]
            print(f"transformers {version}: {len(names)} recipes ...", flush=True)
            python = environment(version, base)
            found = measure_release(version, python, names, base)
            rows.extend(found["rows"])
            for name, quote in found["quotes"].items():
                quotes[name] = quote  # the newest release that runs the recipe quotes it
            print(f"  backends {found['backends']}, {len(found['rows'])} cells", flush=True)

    if OUTPUT.exists() and set(args.versions) != set(RELEASES):  # a partial run replaces only its releases
        kept = [r for r in json.loads(OUTPUT.read_text(encoding="utf-8")) if r["transformers"] not in args.versions]
        rows = sorted(kept + rows, key=lambda r: Version(r["transformers"]))  # stable: cell order kept
        quotes = {**json.loads(QUOTES.read_text(encoding="utf-8")), **quotes}
    for row in rows:
        assert tuple(row) == ROW_KEYS, row
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n", encoding="utf-8")  # a row a line
    QUOTES.write_text(json.dumps(quotes, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    releases = sorted({row["transformers"] for row in rows}, key=Version)
    record_measurement(OUTPUT, "scripts/recipe_matrix.py", time.perf_counter() - started, releases)
    print(f"\nwrote {OUTPUT.relative_to(ROOT)} ({len(rows)} rows) and {QUOTES.relative_to(ROOT)}")
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
