"""The kernel-free explorer: a page fragment that redraws attention with no kernel and no network.

Chapter 8 shows it. ``static_view`` computes the four variants of ``attnviz.VARIANTS`` for every
layer and head, and embeds them as JSON in HTML with a small script that draws them on a canvas.
The HTML, CSS and JavaScript are package data (``attnviz/static/explorer.*``), read with
``importlib.resources`` and inlined, so the fragment works offline and from a file on disk.

The output is deterministic: the element id is a hash of the embedded data, so two builds of
the same book give byte-identical HTML.
"""

import hashlib
import json
import re
from importlib import resources

import torch

from attnviz.capture import capture_attention
from attnviz.patch import VARIANTS, patched

_STATIC = resources.files("attnviz") / "static"


def _asset(name: str) -> str:
    return (_STATIC / name).read_text(encoding="utf-8")


def token_labels(tokenizer, input_ids: torch.Tensor) -> list[str]:
    """The tokens of ``input_ids[0]`` as text, or their ids when there is no tokenizer."""
    if tokenizer is None:
        return [str(i) for i in input_ids[0].tolist()]
    return tokenizer.convert_ids_to_tokens(input_ids[0].tolist())


def static_data(model, input_ids: torch.Tensor, tokens: list[str], decimals: int = 3) -> dict:
    """The four variants' weights of every layer and head, rounded, as plain lists for JSON.

    Masked cells (weight exactly 0) are written as -1, so that a weight which merely rounds to 0
    is still drawn as a weight, not as masked.
    """
    from attnviz.plot import MASKED_COLOR

    data = {"tokens": list(tokens), "masked_color": MASKED_COLOR, "variants": {}}
    for name, flags in VARIANTS.items():
        with patched(model, **flags):
            attentions = capture_attention(model, input_ids=input_ids)
        data["variants"][name] = [
            [[[-1 if w == 0 else round(float(w), decimals) for w in row] for row in head] for head in layer[0]]
            for layer in attentions
        ]
    return data


def render(data: dict, size: int = 460) -> str:
    """The HTML fragment of the view for ``data`` (as ``static_data`` returns it)."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    uid = "attnviz-" + hashlib.sha256(payload.encode()).hexdigest()[:12]
    fields = {
        "uid": uid,
        "size": str(size),
        "css": _asset("explorer.css"),
        "js": _asset("explorer.js"),
        # inside <script>, "</" would end the element early
        "data": payload.replace("</", "<\\/"),
    }
    # one pass, so nothing inserted (the script, the data) is ever scanned for placeholders
    return re.sub(r"\{\{(\w+)\}\}", lambda match: fields[match.group(1)], _asset("explorer.html"))


def static_view(model=None, tokenizer=None, input_ids=None, size: int = 460):
    """A kernel-free explorer: an ``IPython.display.HTML`` with the four variants embedded.

    Radio buttons switch causal/bidirectional and RoPE/NoRoPE, selects pick layer and head; a
    small script draws on a canvas. Everything is inline: it works offline, with no kernel.

    Args:
        model: a Llama-family model; default the book's demo model (``attnviz.load_demo``).
        tokenizer: its tokenizer (the demo's by default), for the token labels.
        input_ids: ``(1, seq)`` ids; default ``attnviz.demo_example()``.
        size: the canvas's width and height in pixels.
    """
    from IPython.display import HTML

    from attnviz.demo import demo_example, load_demo

    if model is None:
        model, demo_tokenizer = load_demo()
        tokenizer = tokenizer or demo_tokenizer
    input_ids = demo_example(tokenizer) if input_ids is None else input_ids
    data = static_data(model, input_ids, token_labels(tokenizer, input_ids))
    return HTML(render(data, size=size))
