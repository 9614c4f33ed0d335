"""Long-context attention maps: is attnviz.attention_map exact, and what does it cost on this CPU?

The model: a 2-layer Llama (hidden 512, 8 heads of head_dim 64, 8 key/value heads, MLP 1024),
random weights, float32. The map is head 0 of layer 1, pooled to 512 x 512 by block max.

- exactness: at 2k and 4k tokens, the pooled map against block-max and block-mean pooling of
  capture_attention's full weights for that head, on eager and sdpa, causal and bidirectional,
  with and without a sliding window (Mistral, window 256). Target: max |difference| <= 1e-6.
- cost, on sdpa, causal, at 8k, 16k, 32k and 64k tokens: the forward pass up to layer 1 alone
  (hooks stop it before layer 1's attention), and attention_map, which runs that forward and then
  the map. The map's own cost is the difference. Each measurement runs in its own process; peak
  RSS is measured from just before the call (after building the model and a warm-up call at 1k
  tokens), so the two peaks compare. Targets: at 32k, the map's own cost <= 30 s and <= 700 MB
  above the forward's peak; at 8k, <= 3 s; peak memory about x2 per doubling (linear, not x4).

The machine is shared: the load average before and after each measurement is recorded with it.

    .venv/bin/python benchmarks/long_context.py [--seq 8192 16384 32768 65536] [--repeats 1]
Writes benchmarks/results/long_context.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_since, start_peak_rss, write  # noqa: E402

SIZES = dict(hidden_size=512, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=8, head_dim=64)
LAYER, HEAD, SIZE = 1, 0, 512
WINDOW = 256


def build(backend: str, seq: int, window: int | None = None):
    import attnviz

    fields = dict(attn_implementation=backend, max_position_embeddings=max(seq, 512), **SIZES)
    if window:
        return attnviz.tiny_model("mistral", sliding_window=window, **fields)
    return attnviz.tiny_model("llama", **fields)


def inputs(seq: int) -> dict:
    import torch

    ids = torch.randint(0, 256, (1, seq), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "use_cache": False}


def exactness(seq: int, backend: str, bidirectional: bool, window: int | None) -> dict:
    import torch

    import attnviz

    model = build(backend, seq, window)
    kwargs = inputs(seq)
    with attnviz.patched(model, bidirectional=bidirectional):
        full = attnviz.capture_attention(model, layers=[LAYER], heads=[HEAD], **kwargs)[LAYER][0, 0]
        blocks = full.reshape(SIZE, seq // SIZE, SIZE, seq // SIZE)
        errors = {}
        for reduce, expected in (("max", blocks.amax((1, 3))), ("mean", blocks.mean((1, 3)))):
            result = attnviz.attention_map(model, layer=LAYER, head=HEAD, size=SIZE, reduce=reduce, **kwargs)
            errors[reduce] = float((result.pooled - expected).abs().max())
    offsets = torch.stack([torch.diagonal(full.double(), -d).sum() for d in range(-(seq - 1), seq)])
    distance = float((result.distance.sums - offsets).abs().max())
    return {
        "seq": seq,
        "backend": backend,
        "direction": "bidirectional" if bidirectional else "causal",
        "window": window,
        "max_abs_error_max": errors["max"],
        "max_abs_error_mean": errors["mean"],
        "max_abs_error_distance_sums": distance,
    }


def cost(seq: int, what: str, repeats: int) -> dict:
    """One process: the forward up to the layer, or attention_map (forward + map), at one length."""
    import torch

    import attnviz
    from attnviz import capture

    model = build("sdpa", seq)
    kwargs = inputs(seq)
    _, _, modules = capture.check_call(model, kwargs, "benchmark")

    def call(kw):
        if what == "forward":
            return capture.run_layers(model, modules, {LAYER}, kw)
        return attnviz.attention_map(model, layer=LAYER, head=HEAD, size=SIZE, **kw)

    call(inputs(1024))  # warm-up: first-call costs of torch and transformers, not measured
    times = []
    load_before = os.getloadavg()
    with torch.no_grad():
        before = start_peak_rss()
        for _ in range(repeats):
            start = time.perf_counter()
            result = call(kwargs)
            times.append(time.perf_counter() - start)
            del result
        peak = peak_rss_since(before)
    return {
        "seq": seq,
        "what": what,
        "median_s": statistics.median(times),
        "peak_mb": peak,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _child(*args: str) -> dict:
    command = [sys.executable, __file__, *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--exact-seq", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "SEQ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, seq = args.child[0], int(args.child[1])
        print(json.dumps(cost(seq, what, args.repeats)))
        return 0

    import torch
    import transformers

    print("long-context attention maps: 2-layer Llama, hidden 512, 8 heads x head_dim 64, float32, CPU")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"load average at start: {os.getloadavg()}")

    print(f"\nexactness: layer {LAYER}, head {HEAD}, {SIZE} x {SIZE}, against pooling capture_attention's weights")
    exact_rows, worst = [], 0.0
    for seq in args.exact_seq:
        for backend in ("eager", "sdpa"):
            for bidirectional in (False, True):
                for window in (None, WINDOW):
                    row = exactness(seq, backend, bidirectional, window)
                    worst = max(worst, row["max_abs_error_max"], row["max_abs_error_mean"])
                    exact_rows.append(row)
                    print(
                        f"{seq:5d} {backend:5} {row['direction']:13} window {str(window):4}  "
                        f"max |diff| block max {row['max_abs_error_max']:.1e}, block mean "
                        f"{row['max_abs_error_mean']:.1e}, distance sums {row['max_abs_error_distance_sums']:.1e}"
                    )
    print(f"worst {worst:.1e} (target <= 1e-6) " + ("OK" if worst <= 1e-6 else "MISSED"))

    print(f"\ncost on sdpa, causal, median of {args.repeats}; each in its own process")
    print(
        f"{'tokens':>7} {'forward (s)':>12} {'total (s)':>10} {'map (s)':>8} {'forward MB':>11} {'total MB':>9} "
        f"{'map MB':>7}  load average"
    )
    cost_rows, by_seq = [], {}
    for seq in args.seq:
        try:
            forward = _child("--child", "forward", str(seq), "--repeats", str(args.repeats))
            total = _child("--child", "map", str(seq), "--repeats", str(args.repeats))
        except subprocess.CalledProcessError as error:  # e.g. killed for memory
            print(f"{seq:7d} did not run: exit status {error.returncode}")
            cost_rows.append({"seq": seq, "error": f"exit status {error.returncode}"})
            continue
        row = {
            "seq": seq,
            "forward_s": forward["median_s"],
            "total_s": total["median_s"],
            "map_s": total["median_s"] - forward["median_s"],
            "forward_peak_mb": forward["peak_mb"],
            "total_peak_mb": total["peak_mb"],
            "map_peak_mb": total["peak_mb"] - forward["peak_mb"],
            "load": {
                "forward": [forward["load_before"], forward["load_after"]],
                "map": [total["load_before"], total["load_after"]],
            },
        }
        by_seq[seq] = row
        cost_rows.append(row)
        print(
            f"{seq:7d} {row['forward_s']:12.2f} {row['total_s']:10.2f} {row['map_s']:8.2f} "
            f"{row['forward_peak_mb']:11.0f} {row['total_peak_mb']:9.0f} {row['map_peak_mb']:7.0f}  "
            f"{total['load_before'][0]:.1f} -> {total['load_after'][0]:.1f}"
        )
    growth = {}
    for seq in sorted(by_seq):
        if seq * 2 in by_seq:
            growth[f"{seq}->{seq * 2}"] = {
                "total_peak": by_seq[seq * 2]["total_peak_mb"] / by_seq[seq]["total_peak_mb"],
                "map_peak": by_seq[seq * 2]["map_peak_mb"] / by_seq[seq]["map_peak_mb"],
                "map_time": by_seq[seq * 2]["map_s"] / by_seq[seq]["map_s"],
            }
    for pair, g in growth.items():
        own, time_ratio = g["map_peak"], g["map_time"]
        print(f"{pair}: peak memory x{g['total_peak']:.2f} (map's own x{own:.2f}), map time x{time_ratio:.2f}")

    targets = {}
    if 32768 in by_seq:
        targets["32k map <= 30 s"] = by_seq[32768]["map_s"] <= 30
        targets["32k map <= 700 MB"] = by_seq[32768]["map_peak_mb"] <= 700
    if 8192 in by_seq:
        targets["8k map <= 3 s"] = by_seq[8192]["map_s"] <= 3
    targets["exact to 1e-6"] = worst <= 1e-6
    for name, ok in targets.items():
        print(f"{name}: {'OK' if ok else 'MISSED'}")
    extra = {
        "model": SIZES
        | {
            "layers": 2,
            "dtype": "float32",
            "backend": "sdpa",
            "layer": LAYER,
            "head": HEAD,
            "size": SIZE,
            "reduce": "max",
        },
        "exactness": exact_rows,
        "growth_per_doubling": growth,
        "targets": targets,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"wrote {write('long_context', cost_rows, extra)}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
