"""The kernel-free explorer: a page fragment that redraws attention with no kernel and no network.

Chapter 9 shows it, in two forms that share one page script (``attnviz/static/explorer.js``):

- ``live_view``: the book's demo model runs in the page (``attnviz-demo-model.js`` and the weights
  script of ``attnviz.weblive``) on letters the reader types. On the book's pages the Sphinx
  extension in ``book/_ext`` writes the model's scripts and the view's own script and style into
  ``_static`` (``write_site_assets``) and loads them wherever a live view is (``LIVE_MARKER``); in
  Jupyter, ``inline_model=True`` puts all of them into the output.
- ``static_view``: the four variants of ``attnviz.VARIANTS`` for every layer and head of any
  supported model, computed in Python for one input and embedded as JSON, with the view's script
  and style inline: for Jupyter and for models other than the demo.

The HTML, CSS and JavaScript are package data (``attnviz/static/explorer.*``), read with
``importlib.resources``; the fragment works offline and from a file on disk.

The output is deterministic: the element id is a hash of what the fragment embeds, so two builds
of the same book give byte-identical HTML.
"""

import hashlib
import html
import json
import re
from importlib import resources
from pathlib import Path

import torch

from attnviz.capture import capture_attention
from attnviz.demo import DEMO_TEXT
from attnviz.patch import VARIANTS, patched

_STATIC = resources.files("attnviz") / "static"
DEFAULT_HEAD = 3  # the demo model's previous-token head, the one chapter 9 talks about
LIVE_TEXT = "".join(DEMO_TEXT.split()[1:])  # demo_example() as typed: its letters, without <bos>
# The live view's mark in a page that must load the model's and the view's files (book/_ext adds them).
LIVE_MARKER = 'data-attnviz-live="page"'
EXPLORER_JS, EXPLORER_CSS = "attnviz-explorer.js", "attnviz-explorer.css"  # the view's files in a site


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


def _fragment(uid: str, inline: bool = True, **fields: str) -> str:
    """``explorer.html`` with its placeholders filled, in one pass, so that nothing inserted (the
    script, the data) is ever scanned for placeholders. ``inline``: the view's CSS and JavaScript
    go into the fragment; otherwise the page loads them (``write_site_assets``)."""
    fields = {
        "uid": uid,
        "style": "<style>" + _asset("explorer.css") + "</style>" if inline else "",
        "script": _script(_asset("explorer.js")) if inline else "",
        "marker": "",
        "text": "",
        "data": "",
        "model": "",
        "missing": "",
        "noscript": "",
        **fields,
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda match: fields[match.group(1)], _asset("explorer.html"))


def _script(code: str) -> str:
    # inside <script>, "</script" would end the element early; "<\/" means the same in JavaScript
    return "<script>" + re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE) + "</script>"


def write_site_assets(directory: str | Path) -> tuple[list[str], list[str]]:
    """Write what a page with a live view loads into ``directory`` (a site's ``_static``).

    The view's own script and style (``attnviz-explorer.js``, ``.css``) and the demo model's two
    scripts (``attnviz.write_live_model``). Returns ``(scripts, stylesheets)``: file names, the
    scripts in the order the page must load them. Book pages load these files rather than carry
    them inline, so that a change to them reaches the site without running a chapter again.
    """
    from attnviz.weblive import write_live_model

    directory = Path(directory)
    scripts = [path.name for path in write_live_model(directory)]
    for name, target in ((EXPLORER_JS, "explorer.js"), (EXPLORER_CSS, "explorer.css")):
        (directory / name).write_text(_asset(target), encoding="utf-8")
    return [*scripts, EXPLORER_JS], [EXPLORER_CSS]


def render(data: dict, size: int = 460, layer: int = 0, head: int = DEFAULT_HEAD) -> str:
    """The HTML fragment of the view for ``data`` (as ``static_data`` returns it).

    ``layer`` and ``head`` are what it shows first (a head past the model's last shows head 0).
    """
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    uid = "attnviz-" + hashlib.sha256(payload.encode()).hexdigest()[:12]
    return _fragment(
        uid,
        source="embedded",
        size=str(size),
        layer=str(layer),
        head=str(head),
        # inside <script>, "</" would end the element early
        data='<script type="application/json" class="attnviz-data">' + payload.replace("</", "<\\/") + "</script>",
    )


def render_live(
    text: str = LIVE_TEXT, size: int = 520, layer: int = 0, head: int = DEFAULT_HEAD, model: str = ""
) -> str:
    """The HTML fragment of the live view: the demo model runs in the page on what the reader types.

    Args:
        text: the letters in the box at first.
        model: the two scripts of ``attnviz.weblive`` inlined (``<script>`` elements): then the
            view's own script and style are inlined too. Or "" when the page loads all of them
            (``write_site_assets``): then the fragment carries ``LIVE_MARKER``, which tells the
            book's Sphinx extension to add them to the page.
    """
    fields = {"source": "live", "size": str(size), "layer": str(layer), "head": str(head), "text": html.escape(text)}
    uid = "attnviz-" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + model.encode()).hexdigest()[:12]
    return _fragment(
        uid,
        inline=bool(model),
        **fields,
        marker="" if model else " " + LIVE_MARKER,
        model=model,
        missing=(
            "The demo model's scripts are not on this page: the book's web pages serve them. In "
            "Jupyter, attnviz.live_view(inline_model=True) puts them in the notebook (1.5 MB)."
        ),
        noscript="The figures of chapter 9 show the same heads.",
    )


def live_view(text: str | None = None, *, inline_model: bool = False, size: int = 520):
    """The live explorer: the book's demo model runs in the page, on letters the reader types.

    A box takes letters and ``|`` (``<bos>`` is put in front, as ``demo_example`` does); radio
    buttons switch causal/bidirectional and RoPE/NoRoPE, selects pick the layer and the head (or
    all heads), a checkbox shows the change against causal + RoPE. Under the heatmap, what the
    model predicts after each token. Chapter 9 explains it. No kernel and no network: the forward
    pass is ``attnviz-demo-model.js`` with the weights of ``attnviz.write_live_model``.

    Args:
        text: the letters in the box at first; default the book's example (``demo_example``).
        inline_model: put the model's two scripts (1.5 MB) into the output, for Jupyter. By
            default the page is expected to load them: the book's Sphinx extension adds them to
            every page that shows a live view, and the view says so where they are missing.
        size: the widest the heatmap is drawn, in CSS pixels.
    """
    from IPython.display import HTML

    model = ""
    if inline_model:
        from attnviz.weblive import ENGINE_JS, weights_script

        model = _script(weights_script()) + _script(ENGINE_JS.read_text(encoding="utf-8"))
    return HTML(render_live(LIVE_TEXT if text is None else text, size=size, model=model))


def static_view(model=None, tokenizer=None, input_ids=None, size: int = 460):
    """A kernel-free explorer: an ``IPython.display.HTML`` with the four variants embedded.

    Radio buttons switch causal/bidirectional and RoPE/NoRoPE, selects pick layer and head (or all
    heads), a checkbox shows the change against causal + RoPE; a small script draws on a canvas.
    Everything is inline: it works offline, with no kernel, for any model ``capture_attention``
    supports. For the demo model on text the reader types, see ``live_view``.

    Args:
        model: a Llama-family model; default the book's demo model (``attnviz.load_demo``).
        tokenizer: its tokenizer (the demo's by default), for the token labels.
        input_ids: ``(1, seq)`` ids; default ``attnviz.demo_example()``.
        size: the widest the heatmap is drawn, in CSS pixels.
    """
    from IPython.display import HTML

    from attnviz.demo import demo_example, load_demo

    if model is None:
        model, demo_tokenizer = load_demo()
        tokenizer = tokenizer or demo_tokenizer
    input_ids = demo_example(tokenizer) if input_ids is None else input_ids
    data = static_data(model, input_ids, token_labels(tokenizer, input_ids))
    return HTML(render(data, size=size))
