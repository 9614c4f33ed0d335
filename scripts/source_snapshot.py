"""Quote an older transformers release's source, for the chapters that show what changed since.

The chapters import only the pinned transformers, so an older release's code is read here: in a
throw-away environment holding that release (scripts/envs.py, sharing .venv's torch), each object
below is quoted with attnviz.quote, exactly as a chapter quotes the installed source (file, lines,
version), and the quotes are written to book/data/source_<version>.json. attnviz.source.snapshot
reads them back (None for an object the release does not have). Chapter 1 diffs 4.57.6's
LlamaAttention and eager_attention_forward (the code the blog post this book grew from quotes)
against 5.24; chapter 6 quotes the mask code of 4.53.0, 4.57.6 and 5.1.0. Never edit the JSON
by hand: rerun this script, then scripts/sync_data.py.

    .venv/bin/python scripts/source_snapshot.py --version 4.57.6 [--keep-envs .compat-envs]
    (the committed snapshots: 4.53.0, 4.57.6, 5.1.0)
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from envs import environment  # scripts/envs.py, next to this script

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VERSION = "4.57.6"
# name in the snapshot -> "module:qualified name"
OBJECTS = {
    "LlamaAttention": "transformers.models.llama.modeling_llama:LlamaAttention",
    "eager_attention_forward": "transformers.models.llama.modeling_llama:eager_attention_forward",
    "LlamaModel.forward": "transformers.models.llama.modeling_llama:LlamaModel.forward",
    "find_packed_sequence_indices": "transformers.masking_utils:find_packed_sequence_indices",
    "_preprocess_mask_arguments": "transformers.masking_utils:_preprocess_mask_arguments",
    "create_causal_mask": "transformers.masking_utils:create_causal_mask",
    "sdpa_attention_forward": "transformers.integrations.sdpa_attention:sdpa_attention_forward",
}


def _child() -> int:
    import transformers

    from attnviz.source import quote

    quotes = {}
    for name, target in OBJECTS.items():
        module, qualified = target.split(":")
        obj = importlib.import_module(module)
        try:
            for part in qualified.split("."):
                obj = getattr(obj, part)
        except AttributeError:  # this release has no such function: recorded as None
            quotes[name] = None
            continue
        quotes[name] = quote(obj).to_dict()
    print(json.dumps({"transformers": transformers.__version__, "quotes": quotes}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=DEFAULT_VERSION, help=f"the release to quote (default {DEFAULT_VERSION})")
    parser.add_argument("--keep-envs", type=Path, help="reuse environments in this folder instead of a temporary one")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child()

    with tempfile.TemporaryDirectory(prefix="attnviz-source-") as scratch:
        base = args.keep_envs or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        python = environment(args.version, base)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        result = subprocess.run(
            [str(python), __file__, "--child"], capture_output=True, text=True, env=env, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"quoting transformers {args.version} failed:\n{result.stderr[-3000:]}")
    snapshot = json.loads(result.stdout.strip().splitlines()[-1])
    if snapshot["transformers"] != args.version:
        raise SystemExit(f"the environment has transformers {snapshot['transformers']}, not {args.version}")
    output = ROOT / "book" / "data" / f"source_{args.version}.json"
    output.write_text(json.dumps(snapshot, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {output.relative_to(ROOT)}: {', '.join(snapshot['quotes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
