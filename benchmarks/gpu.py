"""Scaling, patch cost and long-context maps on a CUDA GPU, in one command, within about 6 minutes.

A 2-layer Llama (hidden 1024, 16 query heads, 4 key/value heads, head_dim 64) in bfloat16.

- scaling: one forward, sdpa / flash_attention_2 (if installed) / eager / flex_attention,
  causal and bidirectional (attnviz.bidirectional), 1k to 64k tokens (eager stops at 16k: its
  (heads, seq, seq) weights alone are 8 GiB there);
- patch cost, sdpa: causal baseline, attnviz's patch, native config.is_causal=False, and STATE's
  all-ones 4D float mask, at 8k, 16k and 32k tokens.

- long context (``long_context``): ``attnviz.attention_map`` of one head at 128k tokens, in
  bfloat16, on the model of ``benchmarks/long_context.py`` (2 layers, hidden 512, 8 heads,
  head_dim 64): the forward up to layer 1 alone, then forward and map; the map's own time and
  peak memory are the difference. Also how far the map is from pooling ``capture_attention``'s
  bfloat16 weights at 4k tokens (bfloat16 keeps about 3 significant digits).

Time is the median of 5 calls after warm-up (flex compiles on its first call); memory is the
peak allocated by the forward beyond the weights and inputs. A time budget skips what does not
fit, and says so.

    python benchmarks/gpu.py [--out benchmarks/results] [--budget 270]
    python benchmarks/gpu.py --only long_context [--seq 131072]      # the long-context case alone
    python benchmarks/gpu.py --only long_context --device cpu --seq 1024  # a quick check, anywhere
Writes gpu.json and gpu_long_context.json (only the latter with --only long_context), which
chapters 13 and 14 read. A CPU check writes to _build/gpu-check/ unless --out says otherwise:
chapter 14 refuses a gpu_long_context.json that was not measured on a GPU.
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


LONG_CONTEXT = dict(hidden_size=512, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=8, head_dim=64)


def long_context(seq: int = 131072, device: str = "cuda", dtype=torch.bfloat16, exact_seq: int = 4096) -> list[dict]:
    """attention_map of layer 1, head 0, pooled to 512 x 512, at ``seq`` tokens on ``device``.

    Returns rows: the forward up to layer 1 (hooks stop it before that layer's attention), the
    whole attention_map call (that forward, then the map), and the map's own cost (the difference);
    then the largest difference from pooling capture_attention's weights at ``exact_seq`` tokens.
    """
    from attnviz import capture

    def build(length: int):
        config = attnviz.tiny_config(
            attn_implementation="sdpa", max_position_embeddings=max(length, 512), **LONG_CONTEXT
        )
        return attnviz.tiny_model("llama", config).to(device, dtype)

    def ids(length: int):
        return torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(0)).to(device)

    cuda = device.startswith("cuda")

    def timed(fn) -> dict:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        row = {"seconds": time.perf_counter() - start}
        if cuda:
            row["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return row

    model = build(seq)
    inputs = {"input_ids": ids(seq), "use_cache": False}
    modules = capture.check_call(model, inputs, "benchmark")[2]
    warm = {"input_ids": ids(1024), "use_cache": False}
    capture.run_layers(model, modules, {1}, warm)  # warm-up: kernels load on their first call
    attnviz.attention_map(model, layer=1, head=0, **warm)
    forward = timed(lambda: capture.run_layers(model, modules, {1}, inputs))
    total = timed(lambda: attnviz.attention_map(model, layer=1, head=0, **inputs))
    own = {key: total[key] - forward[key] for key in total}
    rows = [
        {"benchmark": "long_context", "what": what, "seq": seq, "dtype": str(dtype).removeprefix("torch."), **row}
        for what, row in (("forward to layer 1", forward), ("attention_map", total), ("map alone", own))
    ]

    model = build(exact_seq)  # the long one is freed
    exact_inputs = {"input_ids": ids(exact_seq), "use_cache": False}
    full = attnviz.capture_attention(model, layers=[1], heads=[0], **exact_inputs)[1][0, 0].float()
    pooled = attnviz.attention_map(model, layer=1, head=0, **exact_inputs).pooled
    expected = full.reshape(512, exact_seq // 512, 512, exact_seq // 512).amax((1, 3))
    error = float((pooled.to(expected.device) - expected).abs().max())
    rows.append(
        {"benchmark": "long_context", "what": "max |difference| from pooled capture", "seq": exact_seq, "value": error}
    )
    return rows


def _run_long_context(args) -> int:
    rows = long_context(args.seq, args.device, torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    for row in rows:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "benchmark"}
        print("long context", shown, flush=True)
    model = LONG_CONTEXT | {"layers": 2, "layer": 1, "head": 0, "size": 512, "backend": "sdpa"}
    print(f"wrote {write('gpu_long_context', rows, {'model': model}, folder=args.out)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="JSON folder (default benchmarks/results; CPU: _build/gpu-check)")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds; later measurements are skipped")
    parser.add_argument("--only", choices=["long_context"], help="run only this part")
    parser.add_argument("--seq", type=int, default=131072, help="tokens for the long-context map (default 128k)")
    parser.add_argument("--device", default="cuda", help="for a quick check of --only long_context: cpu")
    args = parser.parse_args()
    if args.out is None:
        here = Path(__file__).resolve().parent
        args.out = here / "results" if args.device != "cpu" else here.parent / "_build" / "gpu-check"
    if args.only == "long_context" and args.device == "cpu":
        return _run_long_context(args)
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine")
        return 2
    if args.only == "long_context":
        return _run_long_context(args)
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

    if over_budget("long context"):
        pass
    else:
        _run_long_context(args)

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
