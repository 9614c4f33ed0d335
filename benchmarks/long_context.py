"""Long-context attention maps: is attnviz.attention_map exact, and what does it cost on this CPU?

The model: a 2-layer Llama (hidden 512, 8 heads of head_dim 64, 8 key/value heads, MLP 1024),
random weights, float32. The map is head 0 of layer 1, pooled to 512 x 512 by block max.

- exactness: at 2k and 4k tokens, the pooled map against block-max and block-mean pooling of
  capture_attention's full weights for that head, on eager and sdpa, causal and bidirectional,
  with and without a sliding window (Mistral, window 256). Target: max |difference| <= 1e-6.
- cost, on sdpa, causal, at 8k, 16k, 32k and 64k tokens, each length in its own process: the
  forward pass up to layer 1 alone (hooks stop it before layer 1's attention), then
  attention_map, which runs that forward and then the map. The map's own time is the
  attention_map call less the forward inside it (timed there); its own peak is the call's peak
  RSS less the forward's, each measured from just before the call (after building the model and
  a warm-up call at 1k tokens). Medians of --repeats calls up to 32k tokens, one call beyond.
  Targets: at 32k, the map's own cost <= 30 s and <= 700 MB above the forward's peak; at 8k,
  <= 3 s; peak memory about x2 per doubling (linear, not x4).

The machine is shared: the load average before and after each measurement is recorded with it.

    .venv/bin/python benchmarks/long_context.py [--seq 8192 16384 32768 65536] [--repeats 3]
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
    full = full.double()
    offsets = torch.stack([torch.diagonal(full, -d).sum() for d in range(-(seq - 1), seq)])
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


def cost(seq: int, repeats: int) -> dict:
    """One process, one length: the forward up to the layer alone, then attention_map, back to back.

    attention_map's own forward is timed inside the call (capture.run_layers, wrapped here), so the
    map's own time is that call's time less its own forward, not a difference between two
    processes that a busy machine could make negative. Peak RSS is measured from just before each
    call; the map's own peak is attention_map's peak less the forward's.
    """
    import torch

    import attnviz
    from attnviz import capture

    model = build("sdpa", seq)
    kwargs = inputs(seq)
    _, _, modules = capture.check_call(model, kwargs, "benchmark")
    run_layers, inner = capture.run_layers, []

    def timed_run_layers(*args, **kw):
        start = time.perf_counter()
        out = run_layers(*args, **kw)
        inner.append(time.perf_counter() - start)
        return out

    capture.run_layers = timed_run_layers  # this process only: time the forward inside attention_map

    def forward(kw):
        return run_layers(model, modules, {LAYER}, kw)

    def whole(kw):
        return attnviz.attention_map(model, layer=LAYER, head=HEAD, size=SIZE, **kw)

    forward(inputs(1024))  # warm-up: first-call costs of torch and transformers, not measured
    whole(inputs(1024))
    samples = {key: [] for key in ("forward_s", "total_s", "map_s", "forward_peak_mb", "total_peak_mb")}
    load = {"forward": [], "map": []}
    with torch.no_grad():
        for _ in range(repeats):
            for what, call in (("forward", forward), ("map", whole)):
                load[what].append([round(x, 2) for x in os.getloadavg()])
                before = start_peak_rss()
                start = time.perf_counter()
                result = call(kwargs)
                seconds = time.perf_counter() - start
                peak = peak_rss_since(before)
                del result
                load[what].append([round(x, 2) for x in os.getloadavg()])
                name = "forward" if what == "forward" else "total"
                samples[f"{name}_s"].append(seconds)
                samples[f"{name}_peak_mb"].append(peak)
                if what == "map":
                    samples["map_s"].append(seconds - inner[-1])
    row = {"seq": seq, "repeats": repeats}
    row |= {key: statistics.median(values) for key, values in samples.items()}
    row["map_peak_mb"] = row["total_peak_mb"] - row["forward_peak_mb"]
    row["load"] = {what: [values[0], values[-1]] for what, values in load.items()}
    return row


def _child(*args: str) -> dict:
    command = [sys.executable, __file__, *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--exact-seq", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3, help="medians of this many, up to 32k tokens (then 1)")
    parser.add_argument("--child", type=int, metavar="SEQ", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(cost(args.child, args.repeats)))
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

    print(f"\ncost on sdpa, causal, median of {args.repeats} (1 beyond 32k); each length in its own process")
    print(
        f"{'tokens':>7} {'forward (s)':>12} {'total (s)':>10} {'map (s)':>8} {'forward MB':>11} {'total MB':>9} "
        f"{'map MB':>7}  load average"
    )
    cost_rows, by_seq = [], {}
    for seq in args.seq:
        repeats = args.repeats if seq <= 32768 else 1
        try:
            row = _child("--child", str(seq), "--repeats", str(repeats))
        except subprocess.CalledProcessError as error:  # e.g. killed for memory
            print(f"{seq:7d} did not run: exit status {error.returncode}")
            cost_rows.append({"seq": seq, "error": f"exit status {error.returncode}"})
            continue
        by_seq[seq] = row
        cost_rows.append(row)
        load = row["load"]["map"]
        print(
            f"{seq:7d} {row['forward_s']:12.2f} {row['total_s']:10.2f} {row['map_s']:8.2f} "
            f"{row['forward_peak_mb']:11.0f} {row['total_peak_mb']:9.0f} {row['map_peak_mb']:7.0f}  "
            f"{load[0][0]:.1f} -> {load[1][0]:.1f}"
        )
    growth = {}
    for seq in sorted(by_seq):
        if seq * 2 in by_seq:
            growth[f"{seq}->{seq * 2}"] = {
                "total_peak": by_seq[seq * 2]["total_peak_mb"] / by_seq[seq]["total_peak_mb"],
                # the map's own peak is a few MB, mostly inside the forward's: its ratio is noise
                "map_peak": by_seq[seq * 2]["map_peak_mb"] / max(by_seq[seq]["map_peak_mb"], 1.0),
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
