"""Chapter 9's kernel-free explorer as a reader meets it: the demo model run live in the page.

The built chapter is opened in headless Chromium (the browser and server of test_site.py), over
http and from disk. The reader types, flips every control, points at cells and taps them on a
phone; the page's answers are checked against torch and against the controls. The explorer's
other form, ``attnviz.static_view`` (precomputed variants, for Jupyter), is driven on a page of
its own, and so is ``attnviz.live_view(inline_model=True)``.
"""

import re
from importlib import resources
from urllib.parse import urljoin

import matplotlib
import numpy as np
import pytest
import test_site
import torch
from conftest import HTML
from test_live_model import max_errors, references

import attnviz
from attnviz import weblive
from attnviz.view import EXPLORER_CSS, EXPLORER_JS, LIVE_TEXT

pytestmark = [pytest.mark.book, pytest.mark.browser]

browser = test_site.browser
server = test_site.server
CHAPTER = "notebooks/09_explorer"
LIVE_PAGES = [CHAPTER, "book/playground"]  # the playground page holds the same live view alone
VIEW = ".attnviz-static"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
FLAGS = {name: {"bidirectional": f["bidirectional"], "noRope": f["no_rope"]} for name, f in attnviz.VARIANTS.items()}


def open_explorer(browser, url, viewport=DESKTOP, **options):
    """Open ``url`` and wait until its explorer has drawn; return (page, JavaScript errors, requests)."""
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="load")
    page.wait_for_selector(f"{VIEW}[data-state=ready]", timeout=30000)
    return page, errors, requests


def chapter(browser, server, viewport=DESKTOP, page_name=CHAPTER, **options):
    return open_explorer(browser, urljoin(server, f"{page_name}.html"), viewport, **options)


def state(page) -> dict:
    return page.eval_on_selector(VIEW, "root => ({...root.dataset})")


def assert_state(page, **expected):
    """The explorer's controls as its data attributes say: variant, layer, head, mode, tokens."""
    now = state(page)
    assert {key: now.get(key) for key in expected} == expected, now


def drawing(page) -> str:
    return page.eval_on_selector(f"{VIEW} canvas.heatmap", "canvas => canvas.toDataURL()")


def cell_point(page, head, q, k) -> dict:
    """Where cell (query q, key k) of ``head`` is on the screen, from the view's own layout; the
    page is scrolled to put it in the middle of the window, where a pointer can reach it."""
    return page.eval_on_selector(
        VIEW,
        """(root, [h, q, k]) => {
             const at = root.attnviz.where(h, q, k);
             window.scrollBy(0, at.y - window.innerHeight / 2);
             return root.attnviz.where(h, q, k);
           }""",
        [head, q, k],
    )


def pixel(page, head, q, k) -> list[int]:
    """The colour drawn at the centre of a cell."""
    return page.eval_on_selector(
        VIEW,
        """(root, [h, q, k]) => {
             const canvas = root.querySelector("canvas.heatmap"), box = canvas.getBoundingClientRect();
             const at = root.attnviz.where(h, q, k), ratio = canvas.width / box.width;
             const x = Math.floor((at.x - box.left) * ratio), y = Math.floor((at.y - box.top) * ratio);
             return [...canvas.getContext("2d").getImageData(x, y, 1, 1).data.slice(0, 3)];
           }""",
        [head, q, k],
    )


def run(page, text, variant) -> dict:
    return page.evaluate("([text, flags]) => window.attnvizDemo.run(text, flags)", [text, FLAGS[variant]])


def set_text(page, text):
    page.fill(f"{VIEW} input.text", text)


def predictions(page) -> list[tuple[str, str]]:
    """The prediction strip: (token, what the page says the model predicts after it)."""
    return page.eval_on_selector_all(
        f"{VIEW} .predictions .position",
        "cells => cells.map(c => [c.querySelector('b').textContent, c.querySelector('span').textContent])",
    )


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


def torch_predictions(model, tokenizer, text, variant) -> list[str]:
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(weblive.text_tokens(text))])
    with attnviz.patched(model, **attnviz.VARIANTS[variant]), torch.no_grad():
        predicted = model(input_ids=ids).logits.argmax(-1)[0]
    return tokenizer.convert_ids_to_tokens(predicted.tolist())


@pytest.mark.parametrize("page_name", LIVE_PAGES)
def test_opens_on_the_previous_token_head_with_the_chapter_example(browser, server, demo, page_name):
    page, errors, _ = chapter(browser, server, page_name=page_name)
    assert page.input_value(f"{VIEW} input.text") == LIVE_TEXT
    assert_state(page, variant="causal + RoPE", layer="0", head="3", mode="weights", tokens="32")
    assert page.input_value(f"{VIEW} select.head") == "3"
    # the model copies the whole second half, and the page says so
    strip = predictions(page)
    assert [token for token, _ in strip] == weblive.text_tokens(LIVE_TEXT)
    assert [guess for _, guess in strip] == torch_predictions(*demo, LIVE_TEXT, "causal + RoPE")
    score = page.eval_on_selector(f"{VIEW} .predictions", "box => [+box.dataset.right, +box.dataset.total]")
    assert score == [15, 15]
    assert not errors, errors


def test_typed_text_runs_the_model_in_every_variant(browser, server, demo):
    page, errors, _ = chapter(browser, server)
    text = "abcabcdef|abcabcdef"  # repeated letters: the copy works by position under causal + RoPE
    set_text(page, text.upper())  # typed in capitals: the page lowercases, the vocabulary has no capitals
    assert state(page)["tokens"] == str(len(weblive.text_tokens(text)))
    rights = {}
    for variant in attnviz.VARIANTS:
        mask, positions = variant.split(" + ")
        page.check(f"{VIEW} input[value='{mask}']")
        page.check(f"{VIEW} input[value='{positions}']")
        assert state(page)["variant"] == variant
        assert [guess for _, guess in predictions(page)] == torch_predictions(*demo, text, variant), variant
        rights[variant] = page.eval_on_selector(f"{VIEW} .predictions", "box => +box.dataset.right")
    assert rights["causal + RoPE"] == 9, "the trained copy breaks on repeated letters"
    assert max(rights[v] for v in rights if v != "causal + RoPE") <= 4, rights

    # a character outside the vocabulary: the page says which, and keeps the last good picture
    before = drawing(page)
    set_text(page, "ab1")
    assert state(page)["state"] == "error"
    message = page.inner_text(f"{VIEW} .status")
    assert '"1" (character 3) is not in the demo model\'s vocabulary' in message and "Type only these" in message
    assert drawing(page) == before
    set_text(page, "ab|ab")
    assert state(page)["state"] == "ready" and state(page)["tokens"] == "6"
    assert not page.is_visible(f"{VIEW} .status")
    assert not errors, errors


def test_every_control_redraws(browser, server):
    page, errors, _ = chapter(browser, server)
    seen = [drawing(page)]

    def changed(expected: dict):
        assert_state(page, **expected)
        seen.append(drawing(page))
        assert seen[-1] not in seen[:-1], f"{expected}: the picture did not change"

    page.check(f"{VIEW} input[value='bidirectional']")
    changed({"variant": "bidirectional + RoPE"})
    page.check(f"{VIEW} input[value='NoRoPE']")
    changed({"variant": "bidirectional + NoRoPE"})
    page.check(f"{VIEW} input[value='causal']")
    changed({"variant": "causal + NoRoPE"})
    page.select_option(f"{VIEW} select.layer", "1")
    changed({"layer": "1"})
    page.select_option(f"{VIEW} select.head", "2")
    changed({"head": "2"})
    page.check(f"{VIEW} input.change")
    changed({"mode": "change"})
    page.select_option(f"{VIEW} select.head", "all")
    changed({"head": "all"})
    height = page.eval_on_selector(f"{VIEW} canvas.heatmap", "c => c.getBoundingClientRect().height")
    width = page.eval_on_selector(f"{VIEW} canvas.heatmap", "c => c.getBoundingClientRect().width")
    assert height > 0.9 * width, "all four heads are drawn, two by two"

    # a click on one of the small maps opens that head
    at = cell_point(page, 1, 20, 4)
    page.mouse.click(at["x"], at["y"])
    assert state(page)["head"] == "1" and page.input_value(f"{VIEW} select.head") == "1"
    page.check(f"{VIEW} input[value='RoPE']")
    assert_state(page, variant="causal + RoPE", layer="1", head="1")
    assert not errors, errors


def test_kept_results_and_idle_time_spare_forward_passes(browser, server):
    """A layer or head change reuses the result it has; the other variants of the text are
    computed in idle time, so a flip of mask or positions then runs no forward pass either."""
    page, errors, _ = chapter(browser, server)
    page.evaluate(
        """() => { window.forwards = []; const forward = attnvizDemo.forward;
                   attnvizDemo.forward = (ids, options) => {
                     window.forwards.push([ids.length, options.bidirectional, options.noRope]);
                     return forward(ids, options); }; }"""
    )
    set_text(page, "abcdefgh|abcdefgh")  # 18 tokens: its variant now, the three others in idle time
    page.wait_for_function("new Set(forwards.filter(f => f[0] === 18).map(String)).size === 4", timeout=20000)
    before = page.evaluate("forwards.length")
    page.select_option(f"{VIEW} select.layer", "1")
    page.select_option(f"{VIEW} select.head", "all")
    page.check(f"{VIEW} input[value='bidirectional']")
    page.check(f"{VIEW} input[value='NoRoPE']")
    page.check(f"{VIEW} input.change")
    assert_state(page, variant="bidirectional + NoRoPE", layer="1", head="all", mode="change", tokens="18")
    assert page.evaluate("forwards.length") == before, page.evaluate("forwards")
    set_text(page, "abcdefgh|abcdefg")
    assert [17, True, True] in page.evaluate("forwards"), "a new text runs the model"
    assert not errors, errors


def test_one_line_per_variant_says_what_to_notice(browser, server):
    page, _, _ = chapter(browser, server)
    lines = {}
    for variant in attnviz.VARIANTS:
        mask, positions = variant.split(" + ")
        page.check(f"{VIEW} input[value='{mask}']")
        page.check(f"{VIEW} input[value='{positions}']")
        lines[state(page)["variant"]] = page.inner_text(f"{VIEW} .notice")
    assert set(lines) == set(attnviz.VARIANTS)
    assert len(set(lines.values())) == 4 and all(len(line) > 40 for line in lines.values()), lines
    assert "head 3" in lines["causal + RoPE"] and "<bos>" in lines["causal + NoRoPE"]


def test_pointing_at_a_cell_shows_query_key_and_weight(browser, server):
    page, _, _ = chapter(browser, server)
    tokens = weblive.text_tokens(LIVE_TEXT)
    weights = run(page, LIVE_TEXT, "causal + RoPE")["attentions"][0][3]
    at = cell_point(page, 3, 5, 4)
    page.mouse.move(at["x"], at["y"])
    text = page.inner_text(f"{VIEW} .readout")
    assert text == f"layer 0, head 3: query 5 “{tokens[5]}” → key 4 “{tokens[4]}”: weight {weights[5][4]:.3f}"
    at = cell_point(page, 3, 2, 9)  # above the diagonal: masked
    page.mouse.move(at["x"], at["y"])
    assert "masked" in page.inner_text(f"{VIEW} .readout")


def test_a_tap_on_a_phone_shows_the_weight(browser, server):
    page, _, _ = chapter(browser, server, PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    weights = run(page, LIVE_TEXT, "causal + RoPE")["attentions"][0][3]
    at = cell_point(page, 3, 11, 10)
    page.touchscreen.tap(at["x"], at["y"])
    readout = page.inner_text(f"{VIEW} .readout")
    assert readout.endswith(f"query 11 “o” → key 10 “r”: weight {weights[11][10]:.3f}"), readout
    assert weights[11][10] > 0.5


def test_one_fixed_colour_scale_across_variants(browser, server):
    """The same weight is drawn in the same colour whatever the variant: viridis from 0 to 1."""
    page, _, _ = chapter(browser, server)
    viridis = matplotlib.colormaps["viridis"]
    for mask in ("causal", "bidirectional"):
        page.check(f"{VIEW} input[value='{mask}']")
        variant = state(page)["variant"]
        weights = np.array(run(page, LIVE_TEXT, variant)["attentions"][0][3])
        for q, k in [(5, 4), (20, 3), (31, 16), (12, 0)]:
            expected = np.round(np.array(viridis(weights[q, k])[:3]) * 255)
            assert np.abs(np.array(pixel(page, 3, q, k)) - expected).max() <= 8, (variant, q, k, weights[q, k])
    ramp = page.eval_on_selector(f"{VIEW} .colourbar", "bar => bar.innerText")
    assert "attention weight" in ramp and "0.5" in ramp


def test_after_minus_before_shows_the_change_on_a_diverging_scale(browser, server):
    page, _, _ = chapter(browser, server)
    page.check(f"{VIEW} input.change")
    assert state(page)["mode"] == "change"
    bar = page.inner_text(f"{VIEW} .colourbar")
    assert "change in weight against causal + RoPE" in bar and "\u22121" in bar and "+1" in bar
    # against itself the change is zero: the middle of the diverging scale, white
    assert pixel(page, 3, 5, 4) == [247, 246, 246]

    page.check(f"{VIEW} input[value='NoRoPE']")
    after = np.array(run(page, LIVE_TEXT, "causal + NoRoPE")["attentions"][0][3])
    before = np.array(run(page, LIVE_TEXT, "causal + RoPE")["attentions"][0][3])
    rdbu = matplotlib.colormaps["RdBu_r"]
    for q, k in [(5, 4), (5, 0), (20, 19)]:
        change = after[q, k] - before[q, k]
        expected = np.round(np.array(rdbu((change + 1) / 2)[:3]) * 255)
        assert np.abs(np.array(pixel(page, 3, q, k)) - expected).max() <= 8, (q, k, change)
    at = cell_point(page, 3, 5, 4)
    page.mouse.move(at["x"], at["y"])
    change = after[5, 4] - before[5, 4]
    assert page.inner_text(f"{VIEW} .readout").endswith(
        f"{after[5, 4]:.3f} (was {before[5, 4]:.3f} under causal + RoPE), change \u2212{abs(change):.3f}"
    ), "NoRoPE takes the previous-token weight away"

    page.check(f"{VIEW} input[value='bidirectional']")  # keys causal + RoPE masked now get weight
    at = cell_point(page, 3, 2, 9)
    page.mouse.move(at["x"], at["y"])
    assert "(was masked under causal + RoPE)" in page.inner_text(f"{VIEW} .readout")
    page.uncheck(f"{VIEW} input.change")
    assert "attention weight" in page.inner_text(f"{VIEW} .colourbar")


@pytest.mark.parametrize("page_name", LIVE_PAGES)
def test_the_explorer_fits_a_phone(browser, server, page_name):
    page, _, _ = chapter(browser, server, PHONE, page_name)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for part in ["", " canvas.heatmap", " input.text", " .predictions", " .colourbar"]:
        selector = VIEW + part
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (selector, box)
    canvas = page.locator(f"{VIEW} canvas.heatmap").bounding_box()
    assert canvas["width"] >= 300, "the heatmap uses the phone's width"
    drawn_for = page.eval_on_selector(f"{VIEW} canvas.heatmap", "c => parseFloat(c.style.width)")
    assert drawn_for == pytest.approx(canvas["width"], abs=1), "drawn for another width, then squeezed by CSS"
    set_text(page, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk")  # 64 tokens, the most
    page.select_option(f"{VIEW} select.head", "all")
    assert state(page)["tokens"] == "64"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    canvas = page.locator(f"{VIEW} canvas.heatmap").bounding_box()
    assert canvas["x"] + canvas["width"] <= PHONE["width"]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_controls_keep_the_light_scheme_in_dark_mode(browser, server, theme):
    page, _, _ = chapter(browser, server)
    page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
    styles = page.eval_on_selector(
        VIEW,
        """root => [getComputedStyle(root.querySelector("input[type=radio]")).colorScheme,
                    getComputedStyle(root).backgroundColor, getComputedStyle(root).color]""",
    )
    assert styles == ["light", "rgb(255, 255, 255)", "rgb(34, 34, 34)"], styles


def test_run_equals_torch_on_the_chapter_page(browser, server, demo):
    page, errors, _ = chapter(browser, server)
    model, tokenizer = demo
    texts = weblive.random_texts(12, seed=8)
    attention_error, logit_error = max_errors(page, texts, references(model, tokenizer, texts))
    assert attention_error <= 1e-5 and logit_error <= 1e-4, (attention_error, logit_error)
    assert not errors, errors


@pytest.mark.parametrize("page_name", LIVE_PAGES)
@pytest.mark.parametrize("how", ["http", "file"])
def test_the_model_loads_from_the_site_itself(browser, server, how, page_name):
    page_file = HTML / f"{page_name}.html"
    url = urljoin(server, f"{page_name}.html") if how == "http" else page_file.as_uri()
    origin = server if how == "http" else HTML.as_uri() + "/"
    page, errors, requests = open_explorer(browser, url)
    page.check(f"{VIEW} input[value='NoRoPE']")
    assert state(page)["variant"] == "causal + NoRoPE"
    names = {request.split("?")[0].rsplit("/", 1)[-1] for request in requests}
    assert {weblive.WEIGHTS_NAME, weblive.ENGINE_NAME} <= names, requests
    assert [r for r in requests if not r.startswith(origin)] == [], "requests left the site"
    assert not errors, errors


@pytest.mark.parametrize("page_name", LIVE_PAGES)
def test_the_page_carries_the_model_not_precomputed_weights(build_log, page_name):
    page = (HTML / f"{page_name}.html").read_text(encoding="utf-8")
    assert 'class="attnviz-data"' not in page, "the live page needs no embedded variants"
    start = page.index('<div class="attnviz-static"')
    fragment = page[start : page.index("\n</div>", page.index("attnvizExplorer.mount", start))]
    files = set(re.findall(r'(?:src|href)="\.\./_static/(attnviz-(?:demo|explorer)[^"?]*)', page))
    assert files == {weblive.WEIGHTS_NAME, weblive.ENGINE_NAME, EXPLORER_JS, EXPLORER_CSS}, files
    added = len(fragment.encode()) + sum((HTML / "_static" / name).stat().st_size for name in files)
    assert added <= 1.6e6, f"the live explorer adds {added:,} bytes"
    # the files are the package's own, as this build wrote them
    shipped = resources.files("attnviz") / "static" / "explorer.js"
    assert (HTML / "_static" / EXPLORER_JS).read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8")


@pytest.mark.parametrize("page_name", LIVE_PAGES)
def test_without_javascript_the_page_says_so(browser, server, page_name):
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    page.goto(urljoin(server, f"{page_name}.html"))
    assert "draws with JavaScript, which is off here" in page.inner_text(VIEW)
    assert not page.is_visible(f"{VIEW} form") and not page.is_visible(f"{VIEW} canvas")
    context.close()


# --- the other forms, for Jupyter: precomputed variants, and the model inlined ------------------


def test_static_view_draws_precomputed_variants_without_the_model(browser, tmp_path, demo):
    (tmp_path / "static.html").write_text(
        f'<!doctype html><meta charset="utf-8"><body>{attnviz.static_view(*demo).data}</body>', encoding="utf-8"
    )
    page, errors, requests = open_explorer(browser, (tmp_path / "static.html").as_uri())
    assert_state(page, source="embedded", layer="0", head="3", tokens="32")
    assert not page.is_visible(f"{VIEW} input.text") and not page.is_visible(f"{VIEW} .predictions")
    first = drawing(page)
    page.check(f"{VIEW} input[value='NoRoPE']")
    assert drawing(page) != first
    page.check(f"{VIEW} input.change")
    at = cell_point(page, 3, 5, 4)
    page.mouse.move(at["x"], at["y"])
    assert "(was 0." in page.inner_text(f"{VIEW} .readout")
    assert all(r.startswith("file://") for r in requests) and not errors, (requests, errors)


def test_live_view_with_the_model_inlined_runs_from_one_file(browser, tmp_path):
    html = attnviz.live_view("hello|hello", inline_model=True).data
    assert "<script src" not in html and "globalThis.attnvizDemoWeights = {" in html, "both scripts inline"
    (tmp_path / "live.html").write_text(f'<!doctype html><meta charset="utf-8"><body>{html}</body>', encoding="utf-8")
    page, errors, requests = open_explorer(browser, (tmp_path / "live.html").as_uri())
    assert state(page)["tokens"] == "12" and requests == [(tmp_path / "live.html").as_uri()]
    assert not errors, errors


def test_live_view_without_the_model_says_how_to_get_it(browser, tmp_path):
    """In Jupyter no site serves the model's and the view's files: the output says what to do."""
    html = attnviz.live_view().data
    (tmp_path / "bare.html").write_text(f'<!doctype html><meta charset="utf-8"><body>{html}</body>', encoding="utf-8")
    page = browser.new_page()
    page.goto((tmp_path / "bare.html").as_uri())
    page.wait_for_selector(f"{VIEW} .missing", state="visible")
    assert "live_view(inline_model=True)" in page.inner_text(VIEW)
    assert not page.is_visible(f"{VIEW} form"), "no dead controls"
    page.close()
