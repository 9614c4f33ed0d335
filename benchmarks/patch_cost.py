"""What making a Llama bidirectional costs: peak memory and median time of one forward on CPU.

Four ways to run the same 2-layer tiny Llama (sdpa, no padding) at one sequence length:

- causal baseline: the model as transformers builds it;
- attnviz patch: attnviz.bidirectional(model);
- native: config.is_causal=False (transformers >= 5.2);
- all-ones 4D mask: what a later STATE version passes when no mask is given, a float
  (batch, 1, seq, seq) tensor of ones: 4 * seq^2 bytes per sequence, and sdpa loses its
  mask-free fast path.

Each variant runs in its own process, so peak RSS (minus the RSS before the first forward) is
that variant's alone; each is run three times and the medians are reported. Targets, so that the
patch costs nothing beyond what transformers' own keyword costs: attnviz's patch within 5% of the
causal baseline's memory and within 5% of native's time.

    .venv/bin/python benchmarks/patch_cost.py [--seq 8192 16384] [--repeats 5]
Writes benchmarks/results/patch_cost.json.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_since, start_peak_rss, write  # noqa: E402

VARIANTS = ("causal baseline", "attnviz patch", "native is_causal=False", "all-ones 4D mask")


def measure(variant: str, seq: int, repeats: int) -> dict:
    import torch

    import attnviz

    torch.set_num_threads(torch.get_num_threads())
    overrides = {"is_causal": False} if variant == "native is_causal=False" else {}
    model = attnviz.tiny_model(attn_implementation="sdpa", max_position_embeddings=max(seq, 512), **overrides)
    embeds = torch.randn(1, seq, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    kwargs = {"inputs_embeds": embeds, "use_cache": False}
    if variant == "attnviz patch":
        attnviz.bidirectional(model)

    def forward():
        if variant == "all-ones 4D mask":
            # built on every call, as STATE's forward does when no mask is given
            kwargs["attention_mask"] = torch.ones(1, 1, seq, seq)
        model(**kwargs)
        kwargs.pop("attention_mask", None)

    times = []
    with torch.no_grad():
        forward()  # warm-up, not measured
        before = start_peak_rss()
        for _ in range(repeats):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
        peak = peak_rss_since(before)
    return {"variant": variant, "seq": seq, "median_s": statistics.median(times), "peak_mb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.seq[0], args.repeats)))
        return 0

    import torch
    import transformers

    print("patch cost, 2-layer tiny Llama (hidden 128, 4 heads, head_dim 32), sdpa, CPU")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    rows, ok = [], True
    for seq in args.seq:
        by = {}
        for variant in VARIANTS:
            command = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--seq",
                str(seq),
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            by[variant] = json.loads(out.strip().splitlines()[-1])
        base, patch, native, ones = (by[v] for v in VARIANTS)
        time_ratio = patch["median_s"] / native["median_s"]
        memory_gap = (patch["peak_mb"] - base["peak_mb"]) / base["peak_mb"]
        mask_mb = 4 * seq**2 / 2**20
        print(f"\n{seq} tokens")
        print(f"{'variant':26} {'median time (s)':>16} {'peak memory (MB)':>17}")
        for variant in VARIANTS:
            print(f"{variant:26} {by[variant]['median_s']:16.3f} {by[variant]['peak_mb']:17.1f}")
        print(
            f"attnviz patch vs native time:        {time_ratio:.3f}x  (target <= 1.05) "
            + ("OK" if time_ratio <= 1.05 else "MISSED")
        )
        print(
            f"attnviz patch vs causal peak memory: {memory_gap:+.1%}  (target within 5%) "
            + ("OK" if abs(memory_gap) <= 0.05 else "MISSED")
        )
        print(
            f"all-ones mask: {mask_mb:.0f} MB for the mask alone (4 * seq^2 bytes); peak "
            f"{ones['peak_mb'] - base['peak_mb']:+.0f} MB ({ones['peak_mb'] / base['peak_mb']:.2f}x the causal peak) "
            f"and {ones['median_s'] / native['median_s']:.2f}x time vs native"
        )
        ok &= time_ratio <= 1.05 and abs(memory_gap) <= 0.05
        rows.extend(by.values())
    print(f"wrote {write('patch_cost', rows)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
