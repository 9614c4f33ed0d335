"""Which bidirectional patches work on which transformers release? Measure it.

For each transformers version below, make a throw-away virtual environment that shares this
project's torch (a .pth file points at .venv's site-packages, after the environment's own, so
the environment's transformers and its dependencies win), install that transformers, and run
three patches through attnviz's probes under eager and sdpa attention:

- seed: STATE's patch as first published (attnviz.state.SeedBidirectionalModel);
- state_later: STATE's later patch (config.is_causal=False, layer is_causal=False, all-ones mask);
- attnviz: attnviz.bidirectional + attnviz.no_rope.

Writes book/data/compat.json, a list of rows with the keys transformers, patch, backend,
attends_to_future, uses_positions, refused and error. Chapter 6 renders it and re-runs the
installed version's rows live.

    .venv/bin/python scripts/compat_matrix.py [--versions 4.52.4 5.24.0] [--keep-envs DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from envs import environment  # scripts/envs.py, next to this script

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "book" / "data" / "compat.json"
VERSIONS = ["4.52.4", "4.53.0", "4.57.6", "5.1.0", "5.2.0", "5.24.0"]


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

    rows = []
    with tempfile.TemporaryDirectory(prefix="attnviz-compat-") as scratch:
        base = args.keep_envs or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        for version in args.versions:
            print(f"transformers {version}: setting up ...", flush=True)
            python = environment(version, base)
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            result = subprocess.run(
                [str(python), __file__, "--child"], capture_output=True, text=True, env=env, check=False
            )
            if result.returncode != 0:
                print(result.stderr[-3000:])
                return 1
            found = json.loads(result.stdout.strip().splitlines()[-1])
            assert all(row["transformers"] == version for row in found), found
            rows.extend(found)

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"\n{'transformers':>12} {'patch':12} {'backend':7} {'future':7} {'positions':9} note")
    for row in rows:
        note = "refused" if row["refused"] else (row["error"] or "")
        print(
            f"{row['transformers']:>12} {row['patch']:12} {row['backend']:7} {str(row['attends_to_future']):7} "
            f"{str(row['uses_positions']):9} {note[:70]}"
        )
    print(f"\nwrote {OUTPUT.relative_to(ROOT)} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
