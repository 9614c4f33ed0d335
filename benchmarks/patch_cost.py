"""What making a Llama bidirectional costs: peak memory and median time of one forward on CPU.

Four ways to run the same 2-layer tiny Llama (sdpa, no padding) at one sequence length:

- causal baseline: the model as transformers builds it;
- attnviz patch: attnviz.bidirectional(model);
- native: config.is_causal=False (transformers >= 5.2);
- all-ones 4D mask: what a later STATE version passes when no mask is given, a float
  (batch, 1, seq, seq) tensor of ones: 4 * seq^2 bytes per sequence, and sdpa loses its
  mask-free fast path.

Each variant runs in its own process, so peak RSS (minus the RSS before the first forward) is
that variant's alone. Targets (issue 3): attnviz's patch within 5% of the causal baseline's
memory and within 5% of native's time.

    python benchmarks/patch_cost.py [--seq 8192] [--repeats 5]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("causal baseline", "attnviz patch", "native is_causal=False", "all-ones 4D mask")


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(variant: str, seq: int, repeats: int) -> dict:
    import torch

    import attnviz

    torch.set_num_threads(torch.get_num_threads())
    overrides = {"is_causal": False} if variant == "native is_causal=False" else {}
    model = attnviz.tiny_llama(attn_implementation="sdpa", max_position_embeddings=max(seq, 512), **overrides)
    embeds = torch.randn(1, seq, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    kwargs = {"inputs_embeds": embeds, "use_cache": False}
    if variant == "attnviz patch":
        attnviz.bidirectional(model)
    before = _rss_mb()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first call warms up and is not timed
            start = time.perf_counter()
            if variant == "all-ones 4D mask":
                # built on every call, as STATE's forward does when no mask is given
                kwargs["attention_mask"] = torch.ones(1, 1, seq, seq)
            model(**kwargs)
            times.append(time.perf_counter() - start)
            kwargs.pop("attention_mask", None)
    times = times[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"variant": variant, "seq": seq, "median_s": statistics.median(times), "peak_mb": peak - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.seq, args.repeats)))
        return 0

    rows = []
    for variant in VARIANTS:
        command = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--seq",
            str(args.seq),
            "--repeats",
            str(args.repeats),
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    by = {row["variant"]: row for row in rows}

    import torch
    import transformers

    print(f"patch cost at {args.seq} tokens, 2-layer tiny Llama (hidden 128, 4 heads, head_dim 32), sdpa, CPU")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print(f"{'variant':26} {'median time (s)':>16} {'peak memory (MB)':>17}")
    for row in rows:
        print(f"{row['variant']:26} {row['median_s']:16.3f} {row['peak_mb']:17.1f}")

    base, patch, native, ones = (by[v] for v in VARIANTS)
    mask_mb = 4 * args.seq**2 / 2**20
    time_ratio = patch["median_s"] / native["median_s"]
    memory_gap = (patch["peak_mb"] - base["peak_mb"]) / base["peak_mb"]
    print()
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
        f"{ones['peak_mb'] - base['peak_mb']:+.0f} MB and {ones['median_s'] / native['median_s']:.2f}x time vs native"
    )
    return 0 if time_ratio <= 1.05 and abs(memory_gap) <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
