"""The live explorer driven in code, and the kernel-free view's HTML."""

import hashlib
import json
import os
import re
import subprocess
import sys
from html import escape as html_escape

import pytest
import torch
from conftest import unpatched_attentions
from torch.testing import assert_close

import attnviz
from attnviz.demo import DEMO_TEXT
from attnviz.view import render, token_labels


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


@pytest.fixture
def explorer(demo):
    model, tokenizer = demo
    return attnviz.AttentionExplorer(model, tokenizer)


def _largest_change(explorer) -> str:
    return re.search(r"largest change from the unpatched model in this layer: ([0-9.]+)", explorer.status.value)[1]


def test_toggles_redraw_one_image_in_place(explorer):
    image, first, redraws = explorer.image, explorer.image.value, explorer.redraws
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert "causal + RoPE" in explorer.status.value and "causal, uses positions" in explorer.status.value
    explorer.causal.value = "bidirectional"
    assert explorer.image is image and explorer.redraws == redraws + 1 and explorer.image.value != first
    assert "attends both ways" in explorer.status.value
    explorer.rope.value = "NoRoPE"
    assert "ignores positions" in explorer.status.value
    explorer.causal.value, explorer.rope.value = "causal", "RoPE"
    assert _largest_change(explorer) == "0.000"


@pytest.mark.parametrize("layer", [0, 1])
def test_each_variant_draws_its_weights_and_reports_how_far_they_moved(demo, layer):
    # The reference is the eager model's own output_attentions with the variant made by its inputs
    # (conftest.unpatched_attentions), so neither the patches nor capture_attention check themselves.
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    explorer = attnviz.AttentionExplorer(model, tokenizer)
    explorer.layer.value = layer
    explorer.head.value = 0  # it opens on head 3 (chapter 9's head); head 0 here
    plain = unpatched_attentions(model, ids)[layer][0]  # (heads, q_len, k_len)
    for name, flags in attnviz.VARIANTS.items():
        explorer.causal.value = "bidirectional" if flags["bidirectional"] else "causal"
        explorer.rope.value = "NoRoPE" if flags["no_rope"] else "RoPE"
        expected = unpatched_attentions(model, ids, **flags)[layer][0]
        drawn = explorer._images[0].get_array()  # head 0, as drawn, with masked cells masked
        assert_close(torch.from_numpy(drawn.filled(0.0)).float(), expected[0], msg=name)
        assert (drawn.mask == (expected[0] == 0).numpy()).all(), name
        moved = (expected - plain).abs().max().item()
        assert _largest_change(explorer) == f"{moved:.3f}", name
        if name != "causal + RoPE":
            assert moved > 0.05, f"{name} should move layer {layer}'s weights"


def test_masked_cells_come_from_the_variant_never_from_zero_weights(explorer):
    import numpy as np

    def grey():
        return np.ma.getmaskarray(explorer._images[0].get_array())

    upper = np.triu(np.ones((32, 32), dtype=bool), k=1)
    assert np.array_equal(grey(), upper)  # causal: the upper triangle, as the mask says
    explorer.causal.value = "bidirectional"
    assert not grey().any()  # bidirectional: nothing is masked, whatever the weights
    explorer.causal.value = "causal"
    assert np.array_equal(grey(), upper)


def test_it_opens_on_the_previous_token_head(explorer, demo):
    """Chapter 9's image of the widget shows head 3, the head its text is about."""
    model, _ = demo
    assert explorer.head.value == 3 and explorer.layer.value == 0
    assert attnviz.offset_score(attnviz.capture_attention(model, input_ids=explorer.input_ids)[0]).argmax() == 3
    small = attnviz.tiny_model("llama", num_attention_heads=2, num_key_value_heads=2)
    assert attnviz.AttentionExplorer(small, None, torch.tensor([[1, 2, 3]])).head.value == 0


def test_layers_heads_backends_and_own_tokens(explorer):
    explorer.head.value = "all"
    explorer.layer.value = 1
    explorer.backend.value = "sdpa"
    assert "backend sdpa" in explorer.status.value
    assert explorer.model.config._attn_implementation == "eager", "the caller's backend must be put back"
    explorer.text.value = "<bos> a b c | a b c"
    assert explorer.input_ids.shape == (1, 8)
    before = explorer.redraws
    explorer.text.value = "<bos> a zz"
    assert explorer.redraws == before and "unknown tokens zz" in explorer.status.value
    assert explorer.input_ids.shape == (1, 8)


def test_static_view_is_self_contained(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    assert "<canvas" in html and "<script>" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the view must not load anything from the network"
    assert len(html.encode()) < 400_000


def test_static_view_embeds_all_four_variants(demo):
    """Every variant's weights as the page draws them: rounded to 3 decimals, -1 where masked."""
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    html = attnviz.static_view(model, tokenizer).data
    data = json.loads(re.search(r'<script type="application/json" class="attnviz-data">(.*?)</script>', html, re.S)[1])
    assert data["tokens"] == tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert sorted(data["variants"]) == sorted(attnviz.VARIANTS)
    for name, flags in attnviz.VARIANTS.items():
        embedded = torch.tensor(data["variants"][name])  # (layers, heads, q_len, k_len)
        expected = torch.stack([layer[0] for layer in unpatched_attentions(model, ids, **flags)])
        assert embedded.shape == expected.shape == (2, 4, 32, 32), name
        masked = embedded == -1
        assert torch.equal(masked, expected == 0), f"{name}: masked cells are not where the weights are 0"
        assert_close(embedded[~masked], expected[~masked], atol=5e-4, rtol=0, msg=name)


def test_static_view_is_byte_identical_across_processes(demo):
    """Two builds of the book must give the same HTML: no salted hash(), no timestamps."""
    code = "import hashlib, attnviz; print(hashlib.sha256(attnviz.static_view().data.encode()).hexdigest())"
    seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)  # another salt than this process's
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = hashlib.sha256(attnviz.static_view(*demo).data.encode()).hexdigest()
    assert result.stdout.strip() == here


def test_static_view_ships_its_script_and_style_from_package_data(demo):
    model, tokenizer = demo
    html = attnviz.static_view(model, tokenizer).data
    from importlib import resources

    static = resources.files("attnviz") / "static"
    assert (static / "explorer.js").read_text(encoding="utf-8") in html
    assert (static / "explorer.css").read_text(encoding="utf-8") in html
    assert "{{" not in html, "a placeholder of explorer.html was left unfilled"


# ---- the live explorer's data: typed tokens, labels, the baseline and the backend


def _labels(explorer) -> list[str]:
    """The token labels of the figure the explorer draws (its rows), as matplotlib holds them."""
    return [label.get_text() for label in explorer._fig.axes[0].get_yticklabels()]


def test_typed_tokens_are_taken_from_2_to_64_and_refused_otherwise(explorer):
    refused = "Not updated: use 2-64 tokens from the vocabulary, separated by spaces."
    before = explorer.redraws
    explorer.text.value = "<bos> a"  # the fewest it takes
    assert explorer.input_ids.shape == (1, 2) and explorer.redraws == before + 1
    assert _labels(explorer) == ["<bos>", "a"], "the figure is labelled with the typed tokens"
    longest = "<bos> " + " ".join("abcdefg"[i % 7] for i in range(63))
    explorer.text.value = longest  # the most it takes: the demo model's 64 positions
    assert explorer.input_ids.shape == (1, 64) and explorer.redraws == before + 2
    assert explorer.input_ids[0].tolist() == explorer.tokenizer.convert_tokens_to_ids(longest.split())
    for text in ["<bos>", "<bos> " + " ".join("a" * 64)]:  # 1 and 65 tokens
        explorer.text.value = text
        assert explorer.status.value == refused, text
        assert explorer.redraws == before + 2 and explorer.input_ids.shape == (1, 64), text
    explorer.text.value = "<bos> zz a yy"
    assert explorer.status.value == "Not updated: unknown tokens zz, yy; " + refused[len("Not updated: ") :]
    assert explorer.redraws == before + 2


def test_without_a_tokenizer_it_labels_ids_and_refuses_typed_tokens():
    small = attnviz.tiny_model("llama", num_attention_heads=2, num_key_value_heads=2)
    explorer = attnviz.AttentionExplorer(small, None, torch.tensor([[5, 7, 9]]))
    assert token_labels(None, torch.tensor([[5, 7, 9]])) == ["5", "7", "9"]
    assert explorer.text.value == "5 7 9" and _labels(explorer) == ["5", "7", "9"]
    before = explorer.redraws
    explorer.text.value = "5 7"
    assert explorer.status.value == "Not updated: typing tokens needs a tokenizer (pass tokenizer=)."
    assert explorer.redraws == before and explorer.input_ids.tolist() == [[5, 7, 9]]


def test_the_change_is_measured_on_the_current_input_with_one_baseline_per_input(demo, monkeypatch):
    """The largest change, against the eager model's own weights (conftest.unpatched_attentions); the
    unpatched weights are computed once per input and backend, not once per toggle."""
    import attnviz.explorer as explorer_module

    model, tokenizer = demo
    explorer = attnviz.AttentionExplorer(model, tokenizer)
    assert "(backend eager)" in explorer.status.value, "the probes ran on the chosen backend"
    runs = []
    capture = explorer_module._capture
    monkeypatch.setattr(explorer_module, "_capture", lambda *args, **kwargs: runs.append(1) or capture(*args, **kwargs))

    def shows(ids, flags, captures):
        expected = unpatched_attentions(model, ids, **flags)[0][0]
        moved = (expected - unpatched_attentions(model, ids)[0][0]).abs().max().item()
        assert _largest_change(explorer) == f"{moved:.3f}", flags
        drawn = explorer._images[0].get_array()  # head 3, the one it opens on
        assert_close(torch.from_numpy(drawn.filled(0.0)).float(), expected[3], msg=str(flags))
        assert len(runs) == captures, f"{flags}: {len(runs)} captures, expected {captures}"
        runs.clear()

    ids = attnviz.demo_example(tokenizer)
    explorer.causal.value = "bidirectional"
    shows(ids, {"bidirectional": True}, 1)  # the baseline of this input is kept from the first draw
    explorer.text.value = "<bos> a b c | a b c"  # a new input while bidirectional: a new baseline
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(explorer.text.value.split())])
    shows(ids, {"bidirectional": True}, 2)
    explorer.rope.value = "NoRoPE"
    shows(ids, {"bidirectional": True, "no_rope": True}, 1)
    explorer.causal.value = "causal"
    shows(ids, {"no_rope": True}, 1)


# ---- the kernel-free view's data


def test_static_data_rounds_to_its_decimals_and_names_the_colour_of_masked_cells(demo):
    from importlib import resources

    from attnviz.plot import MASKED_COLOR

    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)[:, :8]
    tokens = token_labels(tokenizer, ids)
    for decimals in (3, 1):
        data = attnviz.static_data(model, ids, tokens, **({} if decimals == 3 else {"decimals": decimals}))
        assert data["tokens"] == tokens
        for name, flags in attnviz.VARIANTS.items():
            embedded = data["variants"][name]
            weights = [w for layer in embedded for head in layer for row in head for w in row if w != -1]
            assert all(w == round(w, decimals) for w in weights), f"{name}: not rounded to {decimals} decimals"
            expected = torch.stack([layer[0] for layer in unpatched_attentions(model, ids, **flags)])
            kept = torch.tensor(embedded) != -1
            assert_close(torch.tensor(embedded)[kept], expected[kept], atol=0.5 * 10**-decimals + 1e-6, rtol=0)
        flat = [w for v in data["variants"].values() for layer in v for h in layer for r in h for w in r]
        assert any(w != round(w, decimals - 1) for w in flat if w != -1), "rounded more than asked"
    # the page paints masked cells in the figures' colour: the data names it, explorer.js draws it
    js = (resources.files("attnviz") / "static" / "explorer.js").read_text(encoding="utf-8")
    rgb = [int(c) for c in re.search(r"const MASKED = \[(\d+), (\d+), (\d+)\]", js).groups()]
    assert data["masked_color"] == MASKED_COLOR == "#" + "".join(f"{c:02x}" for c in rgb)


class _Reversed:
    """The demo's tokenizer with its ids reversed: another tokenizer of the same tokens."""

    def __init__(self, tokenizer):
        self.tokenizer, self.last = tokenizer, len(tokenizer.get_vocab()) - 1

    def convert_tokens_to_ids(self, tokens):
        return [self.last - i for i in self.tokenizer.convert_tokens_to_ids(tokens)]

    def convert_ids_to_tokens(self, ids):
        return self.tokenizer.convert_ids_to_tokens([self.last - i for i in ids])


def _embedded(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" class="attnviz-data">(.*?)</script>', page, re.S)[1])


def _root(page: str) -> dict[str, str]:
    """The attributes of the fragment's outer element."""
    from html.parser import HTMLParser

    found = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: found.append((tag, dict(attrs)))
    parser.feed(page)
    assert found[0][0] == "div"
    return found[0][1]


def test_static_view_takes_its_input_tokenizer_and_size(demo):
    model, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)[:, :6]
    page = attnviz.static_view(model, tokenizer, ids, size=300).data
    assert _embedded(page)["tokens"] == tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert _root(page)["data-size"] == "300" and 'width="300" height="300"' in page
    # by default, the demo's example as the caller's tokenizer spells it, drawn 460 pixels wide
    reversed_ids = torch.tensor([_Reversed(tokenizer).convert_tokens_to_ids(DEMO_TEXT.split())])
    page = attnviz.static_view(model, _Reversed(tokenizer)).data
    assert _embedded(page)["tokens"] == DEMO_TEXT.split()
    causal = torch.tensor(_embedded(page)["variants"]["causal + RoPE"])[0, 0]
    expected = unpatched_attentions(model, reversed_ids)[0][0, 0]
    assert_close(causal[causal != -1], expected[causal != -1], atol=5e-4, rtol=0)
    assert _root(page)["data-size"] == "460" and 'width="460" height="460"' in page


# ---- the page fragments: explorer.html filled, byte for byte


def _static_file(name: str) -> str:
    from importlib import resources

    return (resources.files("attnviz") / "static" / name).read_text(encoding="utf-8")


def _filled(page: str, **fields: str) -> str:
    """explorer.html with ``fields`` put in, the id taken from ``page`` (checked apart)."""
    uid = _root(page)["id"]
    assert re.fullmatch(r"attnviz-[0-9a-f]{12}", uid), uid
    text = _static_file("explorer.html").replace("{{uid}}", uid)
    defaults = dict.fromkeys(["marker", "text", "data", "model", "missing", "noscript", "style", "script"], "")
    for name, value in {**defaults, **fields}.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def _inline_assets() -> dict[str, str]:
    js = _static_file("explorer.js")
    assert "</script" not in js.lower()
    return {"style": "<style>" + _static_file("explorer.css") + "</style>", "script": "<script>" + js + "</script>"}


def test_render_fills_the_fragment_with_the_data_and_the_first_view():
    data = {"variants": {"causal + RoPE": [[[[1.0, -1], [0.5, 0.5]]]]}, "tokens": ["<bos>", "</script><b>"]}
    reordered = {"tokens": data["tokens"], "variants": data["variants"]}
    for page, size, layer, head in [
        (render(data), "460", "0", "3"),
        (render(reordered, size=300, layer=1, head=2), "300", "1", "2"),
    ]:
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
        assert "</script><b>" not in page and _embedded(page) == data
        script = f'<script type="application/json" class="attnviz-data">{payload}</script>'
        fields = {"source": "embedded", "size": size, "layer": layer, "head": head, "data": script}
        assert page == _filled(page, **fields, **_inline_assets())
    # the same data in another key order is the same fragment, id included; other data, another id
    assert render(reordered) == render(data)
    assert _root(render({**data, "tokens": ["a", "b"]}))["id"] != _root(page)["id"]


def test_render_live_fills_the_fragment_for_a_page_or_with_the_model_inline():
    from attnviz.view import LIVE_MARKER, LIVE_TEXT, render_live

    page = render_live()
    missing = re.search(r'<p class="missing" hidden>(.*?)</p>', page)[1]
    assert "attnviz.live_view(inline_model=True)" in missing
    notes = {"missing": missing, "noscript": "The figures of chapter 9 show the same heads."}
    first = {"source": "live", "size": "520", "layer": "0", "head": "3", "text": LIVE_TEXT}
    assert page == _filled(page, **first, **notes, marker=" " + LIVE_MARKER)  # the page loads the rest
    text = 'ab|<a href="x">&'
    asked = {"source": "live", "size": "300", "layer": "1", "head": "2", "text": html_escape(text)}
    page = render_live(text, size=300, layer=1, head=2)
    assert page == _filled(page, **asked, **notes, marker=" " + LIVE_MARKER)
    model = "<script>globalThis.m = 1;</script>"
    page = render_live(text, size=300, layer=1, head=2, model=model)
    assert page == _filled(page, **asked, **notes, model=model, **_inline_assets())
    ids = {
        _root(render_live(*args, **kwargs))["id"] for args, kwargs in [((), {}), (("ab",), {}), ((), {"model": model})]
    }
    assert len(ids) == 3 and render_live() == render_live(), "the id is a hash of what the fragment holds"


def test_script_elements_cannot_be_closed_by_their_code():
    from attnviz.view import _script

    assert _script('a = "</script>"; b = "</SCRIPT>"; c = "<\\/p>"') == (
        '<script>a = "<\\/script>"; b = "<\\/SCRIPT>"; c = "<\\/p>"</script>'
    )


def test_live_view_is_render_live_with_the_model_inline_on_request(monkeypatch):
    import attnviz.weblive
    from attnviz.view import live_view, render_live

    assert live_view().data == render_live()
    assert live_view("ab|ab", size=300).data == render_live("ab|ab", size=300)
    monkeypatch.setattr(attnviz.weblive, "weights_script", lambda: 'globalThis.w = "</SCRIPT>";')
    engine = attnviz.weblive.ENGINE_JS.read_text(encoding="utf-8")
    model = '<script>globalThis.w = "<\\/SCRIPT>";</script><script>' + engine + "</script>"
    assert live_view("ab", inline_model=True).data == render_live("ab", model=model)


def test_write_site_assets_writes_the_package_files_in_load_order(tmp_path, monkeypatch):
    import attnviz.weblive
    from attnviz.view import write_site_assets

    monkeypatch.setattr(attnviz.weblive, "weights_script", lambda model_dir=None: "globalThis.w = 1;")
    static = tmp_path / "_static"
    scripts, stylesheets = write_site_assets(str(static))
    names = [attnviz.weblive.WEIGHTS_NAME, attnviz.weblive.ENGINE_NAME]
    assert scripts == [*names, "attnviz-explorer.js"] and stylesheets == ["attnviz-explorer.css"]
    assert sorted(path.name for path in static.iterdir()) == sorted(scripts + stylesheets)
    assert (static / "attnviz-explorer.js").read_text(encoding="utf-8") == _static_file("explorer.js")
    assert (static / "attnviz-explorer.css").read_text(encoding="utf-8") == _static_file("explorer.css")
    assert (static / names[1]).read_text(encoding="utf-8") == _static_file("demo_model.js")
    assert (static / names[0]).read_text(encoding="utf-8") == "globalThis.w = 1;"


def test_the_static_files_are_ascii():
    """So the locale's encoding reads and writes them as UTF-8 does (scripts/mutation.py relies on it)."""
    for name in ["explorer.html", "explorer.js", "explorer.css", "demo_model.js"]:
        assert _static_file(name).isascii(), name
