"""The live attention explorer: ipywidgets that flip causal/bidirectional and RoPE/NoRoPE.

Chapter 9 shows it. Every change recomputes the attention of the chosen model and redraws one
image in place. The kernel-free view for the rendered book is ``attnviz.view.static_view``.
"""

import contextlib
import html
import io

import numpy as np
import torch

from attnviz.capture import capture_attention
from attnviz.families import find_backbone, sliding_windows
from attnviz.patch import patched
from attnviz.probes import probe_report
from attnviz.reference import layer_mask
from attnviz.view import DEFAULT_HEAD, token_labels


@contextlib.contextmanager
def _backend(model, name: str):
    """Run ``model`` on the attention backend ``name`` for one block, then put the caller's back."""
    config = find_backbone(model).config
    previous = config._attn_implementation
    if previous == name:
        yield model
        return
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def _capture(model, input_ids, bidirectional: bool, no_rope: bool):
    with patched(model, bidirectional=bidirectional, no_rope=no_rope):
        return capture_attention(model, input_ids=input_ids)


class AttentionExplorer:
    """Live widgets: causal/bidirectional and RoPE/NoRoPE toggles, layer, head (or all heads),
    backend, and your own tokens. Shows the heatmap, the probes' verdicts, and how far the
    weights moved from the unpatched model. Display it as the last expression of a cell.

    The model is the caller's own object, not a copy: the patches and the backend menu act on it
    only while the explorer computes, and each update leaves it as it found it (patches undone,
    the caller's attention backend back in place).

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
        if self.input_ids.shape[1] == 0:
            raise ValueError("input_ids must hold at least one token; got an empty sequence of shape (1, 0).")
        self._probes: dict = {}
        config = self.backbone.config

        self.causal = widgets.ToggleButtons(options=["causal", "bidirectional"], description="mask")
        self.rope = widgets.ToggleButtons(options=["RoPE", "NoRoPE"], description="positions")
        self.layer = widgets.Dropdown(options=list(range(config.num_hidden_layers)), description="layer")
        # the demo's previous-token head first, where the model has one of that number
        first_head = DEFAULT_HEAD if DEFAULT_HEAD < config.num_attention_heads else 0
        self.head = widgets.Dropdown(
            options=["all", *range(config.num_attention_heads)], value=first_head, description="head"
        )
        self.backend = widgets.Dropdown(
            options=["eager", "sdpa", "flex_attention"], value=config._attn_implementation, description="backend"
        )
        self.text = widgets.Text(
            value=" ".join(token_labels(tokenizer, self.input_ids)),
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
    def variant(self) -> dict[str, bool]:
        """The current toggles as the keyword arguments of ``attnviz.patched``."""
        return {"bidirectional": self.causal.value == "bidirectional", "no_rope": self.rope.value == "NoRoPE"}

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
        """Recompute the attention for the current controls and redraw the image in place.

        The chosen backend is switched on for this update only: the caller's model is back on its
        own backend when ``update`` returns.
        """
        with _backend(self.model, self.backend.value):
            self._update()

    def _update(self):
        variant = self.variant
        attentions = _capture(self.model, self.input_ids, **variant)
        # the unpatched model's weights depend only on the input and backend: computed once for them
        baseline_key = (tuple(self.input_ids[0].tolist()), self.backend.value)
        if not any(variant.values()):
            self._baseline = (baseline_key, attentions)
        elif self._baseline is None or self._baseline[0] != baseline_key:
            self._baseline = (baseline_key, _capture(self.model, self.input_ids, bidirectional=False, no_rope=False))
        baseline = self._baseline[1]
        layer = self.layer.value
        moved = (attentions[layer] - baseline[layer]).abs().max().item()
        self.image.value = self._render(attentions, layer, token_labels(self.tokenizer, self.input_ids))
        key = (*variant.values(), self.backend.value)
        if key not in self._probes:  # the verdict depends on the variant and backend, not on the input
            with patched(self.model, **variant):
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
        window = sliding_windows(self.model).get(layer)
        # what the current variant lets each query see: the mask is known, never read off the weights
        allowed = layer_mask(len(tokens), bidirectional=self.variant["bidirectional"], window=window)
        if self._layout != layout:
            # laid out with the causal mask, so the "masked" legend exists for whichever variant comes
            causal = layer_mask(len(tokens), bidirectional=False, window=window)
            if all_heads:
                fig = head_grid(attentions, layer, tokens, mask=causal, title=f"Layer {layer}: all heads")
            else:
                fig = heatmap(
                    weights[0], tokens, mask=causal, title=f"Layer {layer}, head {self.head.value}", vmin=0.0, vmax=1.0
                )
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
        masked = np.broadcast_to(~allowed.numpy(), arrays.shape)
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
