"""The command line: ``attnviz render`` draws a layer's heads, ``attnviz check`` prints the probe report.

    attnviz render [--bidirectional] [--no-rope] [--layer L] [--backend eager|sdpa] [--model PATH] --out fig.png
    attnviz render --length 32768 --pool 512 [--layer L] [--head H] [--log] ... --out fig.png
    attnviz check [--model PATH] [--bidirectional] [--no-rope] [--backend ...]

``render`` draws every head of a layer for a short input (up to 128 tokens); with ``--pool N`` it
draws one head of a long input instead, as ``attnviz.attention_map`` pools it to N x N blocks,
with its attention by distance beside it.

Without ``--model`` a tiny random Llama is used. ``--model`` loads a local folder with
``from_pretrained`` (safetensors only, never remote code). Errors print one line and exit 2.
"""

import argparse
import sys
from pathlib import Path

BACKENDS = ("eager", "sdpa", "flex_attention")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(Exception):
    """A mistake of the caller's: reported on one line with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnviz", description="Look at the attention of a Llama-family model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p):
        p.add_argument("--model", type=Path, help="a local model folder (config.json + *.safetensors)")
        p.add_argument("--backend", choices=BACKENDS, help="attention backend (default: the model's own)")
        p.add_argument("--bidirectional", action="store_true", help="let tokens attend both ways")
        p.add_argument("--no-rope", action="store_true", help="remove rotary position embeddings")
        p.add_argument("--length", type=int, default=16, help="number of input positions (default 16)")

    render = sub.add_parser("render", help="draw every head of one layer (or, with --pool, one head) to an image file")
    common(render)
    render.add_argument("--layer", type=int, default=0, help="layer to draw (default 0)")
    render.add_argument(
        "--pool", type=int, metavar="N", help="draw one head of a long input pooled to N x N blocks (e.g. 512)"
    )
    render.add_argument("--head", type=int, help="with --pool: the head to draw (default 0)")
    render.add_argument("--log", action="store_true", help="with --pool: a logarithmic colour scale")
    render.add_argument("--out", type=Path, required=True, help="output image, e.g. fig.png")
    check = sub.add_parser("check", help="print whether the model attends both ways and uses positions")
    common(check)
    return parser


def _loader_for(path: Path):
    """The class that builds the saved model: attnviz's own subclass where config.json names it.

    ``AutoModel`` reads ``model_type`` only; a folder saved from ``attnviz.LlamaBidirectionalModel``
    would come back as a plain causal RoPE ``LlamaModel``. Other architectures that transformers does
    not know get a warning on stderr, since the model may not be what was saved.
    """
    import json

    import transformers
    from transformers import AutoModel

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {path}: config.json is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise UsageError(f"--model {path}: config.json holds a {type(config).__name__}, not an object of settings")
    architectures = config.get("architectures") or []
    if "LlamaBidirectionalModel" in architectures:
        from attnviz.patch import LlamaBidirectionalModel

        return LlamaBidirectionalModel
    unknown = [name for name in architectures if not hasattr(transformers, name)]
    if unknown:
        print(
            f"attnviz: warning: config.json names {', '.join(unknown)}, which transformers does not know; "
            "loading the plain backbone AutoModel gives, which may not behave like the saved model",
            file=sys.stderr,
        )
    return AutoModel


def _load(args):
    import torch
    from safetensors import SafetensorError

    from attnviz.families import find_backbone
    from attnviz.models import tiny_model

    if getattr(args, "pool", None) is None and not 3 <= args.length <= 128:
        more = "; with --pool N, render draws longer inputs as a pooled map" if args.command == "render" else ""
        raise UsageError(f"--length must be between 3 and 128{more}; got {args.length}")
    if args.length < 3:
        raise UsageError(f"--length must be at least 3; got {args.length}")
    if args.model is None:
        # a pooled map of a long input runs on sdpa unless told otherwise: eager builds seq x seq masks
        default = "sdpa" if getattr(args, "pool", None) is not None else "eager"
        model = tiny_model(attn_implementation=args.backend or default, max_position_embeddings=max(512, args.length))
    else:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # keep stderr for errors: one line each
        path = args.model
        if not path.is_dir():
            raise UsageError(f"--model {path}: no such folder")
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {path}: no config.json in that folder")
        if not list(path.glob("*.safetensors")):
            raise UsageError(f"--model {path}: no .safetensors weights there (attnviz loads safetensors only)")
        kwargs = {"attn_implementation": args.backend} if args.backend else {}
        loader = _loader_for(path)
        try:
            model = loader.from_pretrained(path, use_safetensors=True, trust_remote_code=False, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
            # a corrupt or truncated file, weights that do not fit the config, a config transformers rejects
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UsageError(f"--model {path}: cannot load it: {first_line}") from error
        model.eval()
    try:
        backbone = find_backbone(model)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.backend and backbone.config._attn_implementation != args.backend:
        model.set_attn_implementation(args.backend)
    vocab = backbone.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab, (1, args.length), generator=generator)
    return model, input_ids


def _patched(model, args):
    from attnviz.patch import patched

    return patched(model, bidirectional=args.bidirectional, no_rope=args.no_rope)


def _describe(args) -> str:
    return " + ".join(["bidirectional" if args.bidirectional else "causal", "NoRoPE" if args.no_rope else "RoPE"])


def render(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from attnviz.capture import capture_attention
    from attnviz.families import find_backbone, sliding_windows
    from attnviz.plot import head_grid
    from attnviz.reference import layer_mask

    if args.out.is_dir():
        raise UsageError(f"--out {args.out}: that is a folder; give a file name such as {args.out / 'fig.png'}")
    if args.out.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise UsageError(f"--out {args.out}: use a .png, .svg, .pdf or .jpg file name")
    if not args.out.parent.exists():
        raise UsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.pool is None and (args.head is not None or args.log):
        flag = "--head" if args.head is not None else "--log"
        raise UsageError(f"{flag} needs --pool N: without it, render draws every head of --layer")
    if args.pool is not None and not 2 <= args.pool <= args.length:
        raise UsageError(f"--pool {args.pool}: blocks per side, between 2 and --length ({args.length})")
    model, input_ids = _load(args)
    config = find_backbone(model).config
    layers = config.num_hidden_layers
    if not -layers <= args.layer < layers:
        raise UsageError(f"--layer {args.layer}: the model has {layers} layers (0-{layers - 1})")
    if args.pool is not None:
        fig = _pooled_figure(model, input_ids, args, config.num_attention_heads)
    else:
        with _patched(model, args):
            attentions = capture_attention(model, input_ids=input_ids)
        q_len = attentions[args.layer].shape[-2]
        layer = range(layers)[args.layer]
        allowed = layer_mask(q_len, bidirectional=args.bidirectional, window=sliding_windows(model).get(layer))
        fig = head_grid(attentions, args.layer, mask=allowed, title=f"Layer {args.layer}, {_describe(args)}")
    try:
        fig.savefig(args.out, dpi=120)
    except OSError as error:
        raise UsageError(f"--out {args.out}: cannot write it ({error.strerror or error})") from error
    print(f"wrote {args.out}")
    return 0


def _pooled_figure(model, input_ids, args, heads: int):
    from attnviz.longmap import attention_map
    from attnviz.plot import map_and_distance

    head = 0 if args.head is None else args.head
    if not -heads <= head < heads:
        raise UsageError(f"--head {head}: the model has {heads} heads per layer (0-{heads - 1})")
    with _patched(model, args):
        try:
            result = attention_map(model, layer=args.layer, head=head, size=args.pool, input_ids=input_ids)
        except MemoryError as error:
            raise UsageError(str(error).replace("model.set_attn_implementation('sdpa')", "--backend sdpa")) from error
    title = f"Layer {args.layer}, head {head}, {_describe(args)}: {args.length:,} tokens"
    return map_and_distance(result, log=args.log, title=title)


def check(args) -> int:
    from attnviz.probes import probe_report

    model, _ = _load(args)
    with _patched(model, args):
        print(probe_report(model))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"render": render, "check": check}[args.command](args)
    except UsageError as error:
        print(f"attnviz: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
