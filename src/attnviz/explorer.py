"""Explore attention with causal/bidirectional and RoPE/NoRoPE switched on and off.

Two explorers, explained in chapter 8:

- ``AttentionExplorer``: live ipywidgets (Jupyter, Binder, Colab). Every change recomputes the
  attention of the chosen model and redraws one image in place.
- ``static_view``: a self-contained HTML/JavaScript view with the four variants computed ahead of
  time, for the rendered book, where there is no kernel. No CDN, no network.
"""

import contextlib
import html
import io
import json

import numpy as np
import torch

from attnviz.capture import capture_attention
from attnviz.patch import bidirectional, find_backbone, no_rope
from attnviz.probes import probe_report

VARIANTS = {  # name -> (causal, rope)
    "causal + RoPE": (True, True),
    "bidirectional + RoPE": (False, True),
    "causal + NoRoPE": (True, False),
    "bidirectional + NoRoPE": (False, False),
}


@contextlib.contextmanager
def patched(model, causal: bool, rope: bool):
    """Apply ``bidirectional`` (unless ``causal``) and ``no_rope`` (unless ``rope``) for one block."""
    with contextlib.ExitStack() as stack:
        if not causal:
            stack.enter_context(bidirectional(model))
        if not rope:
            stack.enter_context(no_rope(model))
        yield model


def attention_variant(model, input_ids: torch.Tensor, causal: bool, rope: bool) -> tuple[torch.Tensor, ...]:
    """``capture_attention`` of ``model`` on ``input_ids`` with the two patches applied as asked."""
    with patched(model, causal, rope):
        return capture_attention(model, input_ids=input_ids)


def _tokens(tokenizer, input_ids) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in input_ids[0].tolist()]
    return tokenizer.convert_ids_to_tokens(input_ids[0].tolist())


class AttentionExplorer:
    """Live widgets: causal/bidirectional and RoPE/NoRoPE toggles, layer, head (or all heads),
    backend, and your own tokens. Shows the heatmap, the probes' verdicts, and how far the
    weights moved from the unpatched model. Display it as the last expression of a cell.

    Args:
        model: a Llama, Mistral, Qwen2 or Qwen3 model; default the book's demo model (``attnviz.load_demo``).
        tokenizer: its tokenizer (the demo's by default); used for labels and for typed text.
        input_ids: ``(1, seq)`` ids; default ``attnviz.demo_example()``.
    """

    def __init__(self, model=None, tokenizer=None, input_ids=None):
        import ipywidgets as widgets

        from attnviz.demo import demo_example, load_demo

        if model is None:
            model, demo_tokenizer = load_demo()
            tokenizer = tokenizer or demo_tokenizer
        self.backbone = find_backbone(model)
        self.model = model
        self.tokenizer = tokenizer
        self.input_ids = demo_example(tokenizer) if input_ids is None else input_ids
        if self.input_ids.dim() != 2 or self.input_ids.shape[0] != 1:
            raise ValueError(f"input_ids must have shape (1, seq); got {tuple(self.input_ids.shape)}.")
        self._probes: dict = {}
        config = self.backbone.config

        self.causal = widgets.ToggleButtons(options=["causal", "bidirectional"], description="mask")
        self.rope = widgets.ToggleButtons(options=["RoPE", "NoRoPE"], description="positions")
        self.layer = widgets.Dropdown(options=list(range(config.num_hidden_layers)), description="layer")
        self.head = widgets.Dropdown(options=["all", *range(config.num_attention_heads)], value=0, description="head")
        self.backend = widgets.Dropdown(
            options=["eager", "sdpa", "flex_attention"], value=config._attn_implementation, description="backend"
        )
        self.text = widgets.Text(
            value=" ".join(_tokens(tokenizer, self.input_ids)),
            description="tokens",
            continuous_update=False,
            layout=widgets.Layout(width="95%"),
        )
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML()
        for control in (self.causal, self.rope, self.layer, self.head, self.backend, self.text):
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.causal, self.rope]),
                widgets.HBox([self.layer, self.head, self.backend]),
                self.text,
                self.status,
                self.image,
            ]
        )
        self.redraws = 0
        self._layout = None
        self._baseline = None
        self.update()

    # -- state ---------------------------------------------------------------------------------
    @property
    def variant(self) -> tuple[bool, bool]:
        return self.causal.value == "causal", self.rope.value == "RoPE"

    def _on_change(self, change):
        if change["owner"] is self.text and not self._set_text(change["new"]):
            return  # the status line says what was wrong; the figure stays as it was
        self.update()

    def _set_text(self, text: str) -> bool:
        """Use the typed tokens as input; False (with a message in the status line) if they do not fit."""
        if self.tokenizer is None:
            self.status.value = "Not updated: typing tokens needs a tokenizer (pass tokenizer=)."
            return False
        tokens = text.split()
        unknown = [t for t in tokens if t not in self.tokenizer.get_vocab()]
        if unknown or not 2 <= len(tokens) <= 64:
            problem = f"unknown tokens {', '.join(unknown)}; " if unknown else ""
            self.status.value = html.escape(
                f"Not updated: {problem}use 2-64 tokens from the vocabulary, separated by spaces."
            )
            return False
        self.input_ids = torch.tensor([self.tokenizer.convert_tokens_to_ids(tokens)])
        return True

    # -- drawing ------------------------------------------------------------------------------
    def update(self):
        """Recompute the attention for the current controls and redraw the image in place."""
        if self.backbone.config._attn_implementation != self.backend.value:
            self.model.set_attn_implementation(self.backend.value)
        causal, rope = self.variant
        attentions = attention_variant(self.model, self.input_ids, causal, rope)
        # the unpatched model's weights depend only on the input and backend: computed once for them
        baseline_key = (tuple(self.input_ids[0].tolist()), self.backend.value)
        if (causal, rope) == (True, True):
            self._baseline = (baseline_key, attentions)
        elif self._baseline is None or self._baseline[0] != baseline_key:
            self._baseline = (baseline_key, attention_variant(self.model, self.input_ids, True, True))
        baseline = self._baseline[1]
        layer = self.layer.value
        moved = (attentions[layer] - baseline[layer]).abs().max().item()
        self.image.value = self._render(attentions, layer, _tokens(self.tokenizer, self.input_ids))
        key = (causal, rope, self.backend.value)
        if key not in self._probes:  # the verdict depends on the variant and backend, not on the input
            with patched(self.model, causal, rope):
                self._probes[key] = probe_report(self.model)
        report = self._probes[key]
        self.status.value = (
            f"<b>{self.causal.value} + {self.rope.value}</b> &nbsp;|&nbsp; <b>probes</b>: "
            f"{'attends both ways' if report.attends_to_future else 'causal'}, "
            f"{'uses positions' if report.uses_positions else 'ignores positions'} "
            f"(backend {html.escape(report.backend)}) &nbsp;|&nbsp; largest change from the unpatched model "
            f"in this layer: {moved:.3f}"
        )
        self.redraws += 1

    def _render(self, attentions, layer: int, tokens: list[str]) -> bytes:
        """PNG of the current view. The figure (axes, labels, colour bar on a fixed 0-1 scale) is laid
        out once per layer/head/token list; a toggle only redraws the heatmap images over a saved
        background, which keeps the redraw fast."""
        from PIL import Image

        from attnviz.plot import head_grid, heatmap

        all_heads = self.head.value == "all"
        weights = attentions[layer][0] if all_heads else attentions[layer][0, self.head.value][None]
        layout = (all_heads, self.head.value, layer, tuple(tokens))
        if self._layout != layout:
            if all_heads:
                fig = head_grid(attentions, layer, tokens, title=f"Layer {layer}: all heads")
            else:
                fig = heatmap(weights[0], tokens, title=f"Layer {layer}, head {self.head.value}", vmin=0.0, vmax=1.0)
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            FigureCanvasAgg(fig)  # draw with Agg whatever the session's backend is
            fig.set_dpi(72)
            fig.canvas.draw()  # settle the layout, then freeze it
            fig.set_layout_engine("none")
            self._images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
            self._legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
            for image in self._images:
                image.set_clim(0.0, 1.0)  # one fixed scale, so toggles compare like with like
            for artist in self._images + self._legends:
                artist.set_visible(False)
            fig.canvas.draw()
            self._background = fig.canvas.copy_from_bbox(fig.bbox)
            for artist in self._images + self._legends:
                artist.set_visible(True)
            self._fig, self._layout = fig, layout

        canvas = self._fig.canvas
        canvas.restore_region(self._background)
        arrays = weights.float().numpy()
        masked = arrays == 0.0
        for image, array, mask in zip(self._images, arrays, masked, strict=True):
            image.set_data(np.ma.masked_array(array, mask=mask))
            image.axes.draw_artist(image)
        if masked.any():
            for legend in self._legends:
                legend.axes.draw_artist(legend)
        width, height = canvas.get_width_height()
        buffer = io.BytesIO()
        Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
            buffer, format="png", compress_level=1
        )
        return buffer.getvalue()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# -- the kernel-free view --------------------------------------------------------------------------
def static_data(model, input_ids: torch.Tensor, tokens: list[str], decimals: int = 3) -> dict:
    """The four variants' weights of every layer and head, rounded, as plain lists for JSON.

    Masked cells (weight exactly 0) are written as -1, so that a weight which merely rounds to 0
    is still drawn as a weight, not as masked.
    """
    data = {"tokens": tokens, "variants": {}}
    for name, (causal, rope) in VARIANTS.items():
        attentions = attention_variant(model, input_ids, causal, rope)
        data["variants"][name] = [
            [[[-1 if w == 0 else round(float(w), decimals) for w in row] for row in head] for head in layer[0]]
            for layer in attentions
        ]
    return data


_VIEW = """
<div class="attnviz-static" id="{uid}" style="font-family: sans-serif; margin: 1em 0;">
  <div style="margin-bottom: .5em;">
    <span>mask:</span>
    <label><input type="radio" name="{uid}-mask" value="causal" checked> causal</label>
    <label><input type="radio" name="{uid}-mask" value="bidirectional"> bidirectional</label>
    &nbsp; <span>positions:</span>
    <label><input type="radio" name="{uid}-pos" value="RoPE" checked> RoPE</label>
    <label><input type="radio" name="{uid}-pos" value="NoRoPE"> NoRoPE</label>
    &nbsp; <label>layer <select class="layer"></select></label>
    <label>head <select class="head"></select></label>
  </div>
  <canvas width="{size}" height="{size}" style="border: 1px solid #ccc;"></canvas>
  <div class="caption" style="font-size: .9em; color: #444;"></div>
</div>
<script>
(function () {{
  const data = {data};
  const root = document.getElementById("{uid}");
  const canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
  const layerSelect = root.querySelector(".layer"), headSelect = root.querySelector(".head");
  const nLayers = data.variants["causal + RoPE"].length, nHeads = data.variants["causal + RoPE"][0].length;
  for (let l = 0; l < nLayers; l++) layerSelect.add(new Option(l, l));
  for (let h = 0; h < nHeads; h++) headSelect.add(new Option(h, h));
  // viridis, five stops, interpolated
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function color(v) {{
    const x = Math.max(0, Math.min(1, v)) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    const c = stops[i].map((s, k) => Math.round(s + f * (stops[i + 1][k] - s)));
    return "rgb(" + c.join(",") + ")";
  }}
  function value(name) {{ return root.querySelector('input[name="{uid}-' + name + '"]:checked').value; }}
  function draw() {{
    const variant = value("mask") + " + " + value("pos");
    const w = data.variants[variant][+layerSelect.value][+headSelect.value];
    const n = w.length, label = 60, cell = (canvas.width - label) / n;
    let max = 0; w.forEach(r => r.forEach(x => {{ if (x > max) max = x; }}));
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) {{
      ctx.fillStyle = w[q][k] < 0 ? "{masked}" : color(w[q][k] / (max || 1));
      ctx.fillRect(label + k * cell, label + q * cell, Math.ceil(cell), Math.ceil(cell));
    }}
    ctx.fillStyle = "#000"; ctx.font = Math.min(11, cell) + "px sans-serif";
    for (let i = 0; i < n; i++) {{
      ctx.textAlign = "right"; ctx.fillText(data.tokens[i], label - 3, label + (i + 0.75) * cell);
      ctx.save(); ctx.translate(label + (i + 0.75) * cell, label - 3); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(data.tokens[i], 0, 0); ctx.restore();
    }}
    root.querySelector(".caption").textContent = variant + ", layer " + layerSelect.value + ", head " +
      headSelect.value + ": rows are queries, columns keys; grey cells are masked; colour scale 0 to " + max.toFixed(3);
    canvas.dataset.variant = variant;
  }}
  root.querySelectorAll("input, select").forEach(el => el.addEventListener("change", draw));
  draw();
}})();
</script>
"""


def static_view(model=None, tokenizer=None, input_ids=None, size: int = 460):
    """A kernel-free explorer: an ``IPython.display.HTML`` with the four variants embedded.

    Radio buttons switch causal/bidirectional and RoPE/NoRoPE, selects pick layer and head; a
    small script draws on a canvas. Everything is inline: it works offline, with no kernel.
    """
    from IPython.display import HTML

    from attnviz.demo import demo_example, load_demo

    if model is None:
        model, demo_tokenizer = load_demo()
        tokenizer = tokenizer or demo_tokenizer
    input_ids = demo_example(tokenizer) if input_ids is None else input_ids
    data = static_data(model, input_ids, _tokens(tokenizer, input_ids))
    uid = f"attnviz-{abs(hash(json.dumps(data['tokens']))) % 10**8}"
    from attnviz.plot import MASKED_COLOR

    return HTML(_VIEW.format(uid=uid, data=json.dumps(data, separators=(",", ":")), size=size, masked=MASKED_COLOR))
