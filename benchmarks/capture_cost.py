"""What capturing attention costs: attnviz.capture_attention on an sdpa model, against the eager
forward with output_attentions=True that it replaces.

Both give the same weights (tests/test_capture.py). Target: 1.3x or less, so capturing from a
fast backend costs about what eager does.

    python benchmarks/capture_cost.py [--seq 256 1024 2048] [--repeats 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

import attnviz

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def _median_times(fns, repeats: int, min_seconds: float = 1.0) -> list[float]:
    """Median time of each function, calling them in turn so drifts in machine load hit both alike.

    Short runs are repeated until each function has run for ``min_seconds``: at a few
    milliseconds a call, five samples are mostly noise.
    """
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    while len(times[0]) < repeats or min(sum(t) for t in times) < min_seconds:
        for fn, samples in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print("capture cost, 2-layer tiny Llama (hidden 128, 4 heads, 2 KV heads, head_dim 32), CPU")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"median of at least {args.repeats} interleaved calls"
    )
    print(
        f"{'tokens':>7} {'eager + output_attentions (s)':>30} {'capture on sdpa (s)':>20} {'ratio':>7} "
        f"{'one layer, one head (s)':>24}"
    )
    worst, rows = 0.0, []
    for seq in args.seq:
        eager = attnviz.tiny_model(max_position_embeddings=max(seq, 512))
        sdpa = attnviz.tiny_model(attn_implementation="sdpa", max_position_embeddings=max(seq, 512))
        ids = torch.randint(0, 256, (1, seq), generator=torch.Generator().manual_seed(0))

        def eager_forward(eager=eager, ids=ids):
            with torch.no_grad():
                return eager(ids, output_attentions=True, use_cache=False).attentions

        def capture(sdpa=sdpa, ids=ids):
            return attnviz.capture_attention(sdpa, input_ids=ids)

        def capture_one(sdpa=sdpa, ids=ids):
            return attnviz.capture_attention(sdpa, input_ids=ids, layers=[1], heads=[0])

        t_eager, t_capture, t_one = _median_times([eager_forward, capture, capture_one], args.repeats)
        ratio = t_capture / t_eager
        worst = max(worst, ratio)
        rows.append(
            {
                "seq": seq,
                "eager_output_attentions_s": t_eager,
                "capture_sdpa_s": t_capture,
                "capture_one_layer_one_head_s": t_one,
                "ratio": ratio,
            }
        )
        print(f"{seq:7d} {t_eager:30.4f} {t_capture:20.4f} {ratio:7.2f} {t_one:24.4f}")
    print(f"\nworst ratio {worst:.2f}x (target <= 1.30) " + ("OK" if worst <= 1.3 else "MISSED"))
    print(f"wrote {write('capture_cost', rows)}")
    return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
