"""Scaling and patch cost on a CUDA GPU, in one command, within about 5 minutes.

A 2-layer Llama (hidden 1024, 16 query heads, 4 key/value heads, head_dim 64) in bfloat16.

- scaling: one forward, sdpa / flash_attention_2 (if installed) / eager / flex_attention,
  causal and bidirectional (attnviz.bidirectional), 1k to 64k tokens (eager stops at 16k: its
  (heads, seq, seq) weights alone are 8 GiB there);
- patch cost, sdpa: causal baseline, attnviz's patch, native config.is_causal=False, and STATE's
  all-ones 4D float mask, at 8k, 16k and 32k tokens.

Time is the median of 5 calls after warm-up (flex compiles on its first call); memory is the
peak allocated by the forward beyond the weights and inputs. A time budget skips what does not
fit, and says so.

    python benchmarks/gpu.py [--out benchmarks/results] [--budget 270]
Writes gpu.json.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

import attnviz  # noqa: E402

SIZES = dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=4, head_dim=64, intermediate_size=2048)


def build(backend: str, seq: int, **overrides):
    config = attnviz.tiny_config(
        attn_implementation=backend, max_position_embeddings=max(seq, 512), **SIZES, **overrides
    )
    return attnviz.tiny_model("llama", config).to("cuda", torch.bfloat16)


def measure(model, seq: int, make_mask=None, repeats: int = 5, warmup: int = 1) -> dict:
    embeds = torch.randn(1, seq, SIZES["hidden_size"], device="cuda", dtype=torch.bfloat16)

    def call():
        kwargs = {"inputs_embeds": embeds, "use_cache": False}
        if make_mask is not None:
            kwargs["attention_mask"] = make_mask(seq)
        return model(**kwargs)

    with torch.no_grad():
        for _ in range(warmup):
            call()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1000, "peak_mb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds; later measurements are skipped")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine")
        return 2
    start = time.perf_counter()
    rows, skipped = [], []

    def over_budget(what):
        if time.perf_counter() - start > args.budget:
            skipped.append(what)
            return True
        return False

    # -- patch cost (sdpa) first: it is the headline -------------------------------------------
    def ones(seq):
        return torch.ones(1, 1, seq, seq, device="cuda", dtype=torch.bfloat16)

    for seq in (8192, 16384, 32768):
        for variant in ("causal baseline", "attnviz patch", "native is_causal=False", "all-ones 4D mask"):
            if over_budget(f"patch {variant} {seq}"):
                continue
            model = build("sdpa", seq, **({"is_causal": False} if variant == "native is_causal=False" else {}))
            if variant == "attnviz patch":
                attnviz.bidirectional(model)
            result = measure(model, seq, ones if variant == "all-ones 4D mask" else None)
            rows.append({"benchmark": "patch", "variant": variant, "backend": "sdpa", "seq": seq, **result})
            print(
                f"patch   {variant:24} {seq:6d}  {result['median_ms']:9.2f} ms  {result['peak_mb']:9.1f} MB", flush=True
            )
            del model
            torch.cuda.empty_cache()

    # -- scaling ----------------------------------------------------------------------------------
    lengths = (1024, 4096, 8192, 16384, 32768, 65536)
    for backend in ("sdpa", "flash_attention_2", "eager", "flex_attention"):
        unavailable = False
        for direction in ("causal", "bidirectional"):
            for seq in lengths:
                if unavailable or (backend == "eager" and seq > 16384):
                    continue
                if over_budget(f"scaling {backend} {direction} {seq}"):
                    continue
                row = {"benchmark": "scaling", "backend": backend, "direction": direction, "seq": seq}
                model = None
                try:
                    model = build(backend, seq)
                    if direction == "bidirectional":
                        attnviz.bidirectional(model)
                    row.update(measure(model, seq, warmup=2 if backend == "flex_attention" else 1))
                    shown = f"{row['median_ms']:9.2f} ms  {row['peak_mb']:9.1f} MB"
                except Exception as error:  # not installed, out of memory, ...
                    message = str(error).splitlines()[0][:200] if str(error) else ""
                    row["error"] = f"{type(error).__name__}: {message}"
                    shown = row["error"][:90]
                    # a backend that cannot even be built (e.g. flash-attn not installed) is skipped whole
                    unavailable = model is None
                rows.append(row)
                print(f"scaling {backend:17} {direction:13} {seq:6d}  {shown}", flush=True)
                del model
                torch.cuda.empty_cache()

    elapsed = time.perf_counter() - start
    path = write(
        "gpu",
        rows,
        {"model": SIZES | {"layers": 2, "dtype": "bfloat16"}, "skipped": skipped, "elapsed_s": round(elapsed, 1)},
        folder=args.out,
    )
    print(f"\n{len(rows)} measurements in {elapsed:.0f} s; skipped {len(skipped)}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
