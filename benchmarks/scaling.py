"""Time and peak memory of one forward of a 2-layer tiny Llama, by backend and sequence length (CPU).

eager, sdpa and flex_attention; causal and bidirectional (attnviz.bidirectional); 256 to 8192
tokens. Each measurement runs in its own process so its peak RSS is its own. eager materialises
(batch, heads, seq, seq) weights, so its memory grows as seq^2; the script fits that and reports
where eager would no longer fit in this machine's memory.

    .venv/bin/python benchmarks/scaling.py [--seq 256 512 1024 2048 4096 8192] [--repeats 3]
Writes benchmarks/results/scaling_cpu.json.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_since, start_peak_rss, write  # noqa: E402

BACKENDS = ("eager", "sdpa", "flex_attention")


def measure(backend: str, bidirectional: bool, seq: int, repeats: int) -> dict:
    import torch

    import attnviz

    model = attnviz.tiny_model(attn_implementation=backend, max_position_embeddings=max(seq, 512))
    if bidirectional:
        attnviz.bidirectional(model)
    embeds = torch.randn(1, seq, 128, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        model(inputs_embeds=embeds, use_cache=False)  # warm-up, not measured
        before = start_peak_rss()
        for _ in range(repeats):
            start = time.perf_counter()
            model(inputs_embeds=embeds, use_cache=False)
            times.append(time.perf_counter() - start)
        peak = peak_rss_since(before)
    return {
        "backend": backend,
        "direction": "bidirectional" if bidirectional else "causal",
        "seq": seq,
        "median_s": statistics.median(times),
        "peak_mb": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, direction, seq = args.child
        print(json.dumps(measure(backend, direction == "bidirectional", int(seq), args.repeats)))
        return 0

    rows = []
    print(f"{'backend':15} {'direction':14} {'tokens':>6} {'median s':>9} {'peak MB':>9}", flush=True)
    for seq in args.seq:
        for backend in BACKENDS:
            for direction in ("causal", "bidirectional"):
                command = [
                    sys.executable,
                    __file__,
                    "--repeats",
                    str(args.repeats),
                    "--child",
                    backend,
                    direction,
                    str(seq),
                ]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    row = {
                        "backend": backend,
                        "direction": direction,
                        "seq": seq,
                        "error": result.stderr.strip()[-300:],
                    }
                else:
                    row = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{backend:15} {direction:14} {seq:6d} {row.get('median_s', float('nan')):9.3f} "
                    f"{row.get('peak_mb', float('nan')):9.1f} {row.get('error', '')[:60]}",
                    flush=True,
                )

    # eager's memory grows as seq^2: fit peak = a * seq^2 on the two longest causal runs
    eager = sorted(
        (r for r in rows if r["backend"] == "eager" and r["direction"] == "causal" and "peak_mb" in r),
        key=lambda r: r["seq"],
    )
    limit = None
    if len(eager) >= 2:
        a = eager[-1]["peak_mb"] / eager[-1]["seq"] ** 2
        memory_mb = machine().get("memory_gib", 24) * 1024
        limit = int((memory_mb / a) ** 0.5)
        print(
            f"\neager peak memory ~ {a * 1e6:.2f} MB per million seq^2; it would fill "
            f"{memory_mb / 1024:.0f} GiB at about {limit:,} tokens (batch 1, 2 layers, 4 heads)"
        )
    path = write("scaling_cpu", rows, {"eager_limit_tokens": limit})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
