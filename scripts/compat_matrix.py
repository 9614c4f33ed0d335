"""Which bidirectional patches work on which transformers release? Measure it.

For each transformers version below, make a throw-away virtual environment that shares this
project's torch (a .pth file points at .venv's site-packages, after the environment's own, so
the environment's transformers and its dependencies win), install that transformers, and run
three patches through attnviz's probes under eager and sdpa attention, each without and with a
KV cache (use_cache False, as the probes and STATE run a set encoder, and True, LlamaConfig's
default):

- seed: STATE's patch as first published (attnviz.state.SeedBidirectionalModel);
- state_later: STATE's later patch (config.is_causal=False, layer is_causal=False, all-ones mask);
- attnviz: attnviz.bidirectional + attnviz.no_rope.

Writes book/data/compat.json, a list of rows with the keys transformers, patch, backend,
use_cache, attends_to_future, uses_positions, refused, error, layer0_mask and layer0_is_causal
(see attnviz.state.compat_rows). Chapter 6 renders it and re-runs the pinned release's rows
live. Copy it into the package with scripts/sync_data.py afterwards.

A row records an error only when the patch under test raised it. When attnviz's measuring code
or this script fails, in any environment, the script stops with exit code 1 and writes nothing.

    .venv/bin/python scripts/compat_matrix.py [--versions 4.52.4 5.24.0] [--keep-envs DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envs import environment, record_measurement  # scripts/envs.py, next to this script
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # this checkout's attnviz, here and (through PYTHONPATH) in each child
OUTPUT = ROOT / "book" / "data" / "compat.json"
VERSIONS = ["4.52.4", "4.53.0", "4.57.6", "5.1.0", "5.2.0", "5.24.0"]


def measure(version: str, base: Path) -> list[dict]:
    """The rows of one release, measured in its throw-away environment under ``base``.

    Raises SystemExit when the child fails or returns rows that are not a complete, well-formed
    table: a harness failure is never written down as a result.
    """
    python = environment(version, base)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([str(python), __file__, "--child"], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"transformers {version}: the measurement failed\n{result.stderr[-3000:]}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    problems = check_rows(rows, version)
    if problems:
        raise SystemExit(f"transformers {version}: " + "; ".join(problems))
    return rows


def check_rows(rows: list[dict], version: str) -> list[str]:
    """What is wrong with one release's rows: each (patch, backend, use_cache) once, each with
    verdicts, a refusal or the patch's error; an empty list when nothing is."""
    from attnviz.state import COMPAT_BACKENDS, COMPAT_PATCHES, COMPAT_USE_CACHE

    problems = []
    expected = {(p, b, c) for p in COMPAT_PATCHES for b in COMPAT_BACKENDS for c in COMPAT_USE_CACHE}
    found = [(r["patch"], r["backend"], r["use_cache"]) for r in rows]
    if sorted(found) != sorted(expected):
        problems.append(f"expected one row per (patch, backend, use_cache), got {found}")
    for row in rows:
        if row["transformers"] != version:
            problems.append(f"a row measured transformers {row['transformers']}, not {version}")
        measured = isinstance(row["attends_to_future"], bool) and isinstance(row["uses_positions"], bool)
        if not (measured or row["refused"] or row["error"]):
            problems.append(f"no verdict, refusal or error: {row}")
        if measured and (row["refused"] or row["error"]):
            problems.append(f"verdicts and an error at once: {row}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=VERSIONS)
    parser.add_argument("--keep-envs", type=Path, help="reuse environments in this folder instead of a temporary one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from attnviz.state import compat_rows

        print(json.dumps(compat_rows()))
        return 0

    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="attnviz-compat-") as scratch:
        base = args.keep_envs or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        for version in args.versions:
            print(f"transformers {version}: setting up and measuring ...", flush=True)
            rows.extend(measure(version, base))

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    everything = sorted({row["transformers"] for row in rows}, key=Version)
    record_measurement(OUTPUT, "scripts/compat_matrix.py", time.perf_counter() - started, everything)
    header = f"{'patch':12} {'backend':7} {'cache':5} {'future':7} {'positions':9} {'layer 0 mask':20} note"
    print(f"\n{'transformers':>12} {header}")
    for row in rows:
        note = "refused" if row["refused"] else (row["error"] or "")
        print(
            f"{row['transformers']:>12} {row['patch']:12} {row['backend']:7} {str(row['use_cache']):5} "
            f"{str(row['attends_to_future']):7} {str(row['uses_positions']):9} {str(row['layer0_mask']):20} {note[:50]}"
        )
    print(f"\nwrote {OUTPUT.relative_to(ROOT)} ({len(rows)} rows) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
