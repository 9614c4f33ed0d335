"""The site as a reader meets it: on a phone and a desktop, with the network blocked.

Every page is opened in headless Chromium with each request that leaves the local server
aborted, as for a reader offline. Full-page screenshots at 1280 px and 390 px go to
_build/screenshots/ (`<page>_1280.png`, `<page>_390.png`).
"""

import json
from urllib.parse import urljoin

import pytest
import test_site
from bs4 import BeautifulSoup
from conftest import EDITIONS, HTML, ROOT

pytestmark = [pytest.mark.book, pytest.mark.browser]

# the browser and the local server of test_site.py
browser = test_site.browser
server = test_site.server
PAGES = test_site.PAGES
CHAPTERS = [p for p in PAGES if "notebooks/" in p]  # both editions
SCREENSHOTS = ROOT / "_build" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _open(browser, server, page_name, viewport, offsite=None):
    """Open a page with every request off the local server aborted (and noted in `offsite`)."""
    page = browser.new_page(viewport=viewport)

    def route(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            if offsite is not None:
                offsite.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    response = page.goto(urljoin(server, f"{page_name}.html"), wait_until="load")
    assert response.status == 200
    # MathJax typesets after load; measure and shoot the page as the reader ends up seeing it
    page.evaluate("async () => { if (window.MathJax?.startup?.promise) await MathJax.startup.promise; }")
    return page


def _soup(page_name):
    return BeautifulSoup((HTML / f"{page_name}.html").read_text(encoding="utf-8"), "html.parser")


def _screenshot(page, page_name, width):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{page_name.replace('/', '_')}_{width}.png"), full_page=True)


# --- 1. tables -------------------------------------------------------------------------------


def _table_rows(page_name):
    """Each <table> on the page as a list of rows, each row a list of cell texts."""
    return [
        [[cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])] for row in table.find_all("tr")]
        for table in _soup(page_name).select("main table")
    ]


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapter_5_shows_its_equivalence_matrix_as_a_table(build_log, edition):
    tables = _table_rows(f"{edition}notebooks/05_masks_and_backends")
    matrix = next((t for t in tables if t and t[0][0] == "backend"), None)
    assert matrix, f"no table headed 'backend' on chapter 5; tables: {tables}"
    assert [row[0] for row in matrix[1:]] == ["eager", "sdpa", "flex_attention"]
    assert all(len(row) == 5 for row in matrix)


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapter_6_shows_the_layer_0_evidence_of_the_compatibility_matrix(build_log, edition):
    tables = _table_rows(f"{edition}notebooks/06_patch_across_versions")
    # the compatibility matrix itself is a figure (releases x patches x backends x use_cache); the
    # table is its sdpa evidence: what the seed's layer 0 received on each release, with and without a cache
    committed = json.loads((ROOT / "book" / "data" / "compat.json").read_text(encoding="utf-8"))
    by = {(r["transformers"], r["patch"], r["backend"], r["use_cache"]): r for r in committed}
    evidence = next((t for t in tables if t and t[0][:2] == ["transformers", "use_cache"]), None)
    assert evidence, f"no layer-0 evidence table on chapter 6; tables: {tables}"
    assert [row[:2] for row in evidence[1:]] == [
        [version, str(cache)] for version in ("4.53.0", "4.57.6", "5.1.0") for cache in (False, True)
    ]
    for version, cache, _mask, _keyword, verdict in evidence[1:]:
        measured = by[version, "seed", "sdpa", cache == "True"]["attends_to_future"]
        assert verdict == ("both ways" if measured else "CAUSAL"), (version, cache)


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapter_7_shows_the_probe_table(build_log, edition):
    tables = _table_rows(f"{edition}notebooks/07_the_patch_that_works")
    probes = next((t for t in tables if t and t[0] == ["model", "eager", "sdpa", "flex_attention"]), None)
    assert probes, f"no per-backend probe table on chapter 7; tables: {tables}"
    assert probes[1][0] == "plain LlamaModel" and len(probes) >= 4


@pytest.mark.parametrize(
    "page_name",
    [
        f"{e}notebooks/{n}"
        for e in EDITIONS
        for n in (
            "05_masks_and_backends",
            "06_patch_across_versions",
            "07_the_patch_that_works",
            "10_recipes_in_the_wild",  # 14 releases: it showed 4 of them before it scrolled
        )
    ],
)
def test_chapter_tables_fit_the_desktop_column(browser, server, page_name):
    """A chapter's tables fit the desktop column: none hides its last column behind a scroll bar."""
    page = _open(browser, server, page_name, DESKTOP)
    widths = page.evaluate(
        "[...document.querySelectorAll('main table')].map(t => [t.scrollWidth, t.parentElement.clientWidth])"
    )
    page.close()
    assert widths, f"{page_name} shows no table"
    assert all(table <= column for table, column in widths), f"{page_name}: table vs column widths {widths}"


# --- 2. the sidebar buttons ------------------------------------------------------------------


@pytest.mark.parametrize("width", [390, 900])
def test_menu_button_opens_the_chapter_list_and_a_chapter_link_navigates(browser, server, width):
    page = _open(browser, server, "notebooks/04_rope", {"width": width, "height": 844})
    menu = page.locator(".primary-toggle:visible")
    assert menu.count() == 1, "one visible chapter-list button"
    menu.click()
    page.wait_for_function("document.getElementById('pst-primary-sidebar-modal').open", timeout=3000)
    chapter = page.locator("#pst-primary-sidebar-modal a[href$='05_masks_and_backends.html']")
    assert chapter.is_visible(), "the chapter list does not show chapter 5"
    chapter.click()
    page.wait_for_url("**/notebooks/05_masks_and_backends.html", timeout=5000)
    page.close()


def test_contents_button_opens_the_page_contents_on_a_phone(browser, server):
    page = _open(browser, server, "notebooks/04_rope", PHONE)
    contents = page.locator(".secondary-toggle:visible")
    assert contents.count() == 1, "one visible page-contents button"
    contents.click()
    page.wait_for_function("document.getElementById('pst-secondary-sidebar-modal').open", timeout=3000)
    entries = page.locator("#pst-secondary-sidebar-modal nav a")
    assert entries.count() >= 3 and entries.first.is_visible(), "the page contents are not shown"
    page.close()


def test_menu_button_collapses_and_restores_the_sidebar_on_a_desktop(browser, server):
    page = _open(browser, server, "notebooks/04_rope", DESKTOP)
    sidebar = page.locator("#pst-primary-sidebar")
    article = page.locator("main")
    assert sidebar.is_visible()
    left = article.bounding_box()["x"]
    page.locator(".primary-toggle:visible").click()
    page.wait_for_timeout(600)  # the theme animates the collapse
    assert not sidebar.is_visible(), "the sidebar did not collapse"
    assert article.bounding_box()["x"] < left, "the article did not take the sidebar's room"
    assert not page.evaluate("document.getElementById('pst-primary-sidebar-modal').open")
    page.locator(".primary-toggle:visible").click()
    page.wait_for_timeout(600)
    assert sidebar.is_visible(), "the sidebar did not come back"
    page.close()


# --- 4. launch buttons only where Colab and Binder can open the page -------------------------


@pytest.mark.parametrize("edition", EDITIONS)
def test_intro_has_no_launch_buttons(build_log, edition):
    hrefs = [a.get("href", "") for a in _soup(f"{edition}book/intro").find_all("a")]
    assert not [h for h in hrefs if "colab.research.google.com" in h or "mybinder.org" in h]
    assert not _soup(f"{edition}book/intro").select(".dropdown-launch-buttons")


# --- 7. nothing scrolls sideways on a phone (and the screenshots at both widths) -------------


@pytest.mark.parametrize("page_name", PAGES)
def test_page_fits_a_phone(browser, server, page_name):
    page = _open(browser, server, page_name, PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        culprits = page.evaluate(
            """(limit) => [...document.querySelectorAll('main *')]
                 .filter(e => e.getBoundingClientRect().right > limit + 1)
                 .filter(e => !e.closest('pre, .cell_output, .table-wrapper, .pst-scrollable-table-container'))
                 .slice(0, 5).map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 60))""",
            PHONE["width"],
        )
        pytest.fail(f"{page_name} is {width} px wide at {PHONE['width']} px: {culprits}")
    _screenshot(page, page_name, 390)
    page.close()


@pytest.mark.parametrize("page_name", PAGES)
def test_desktop_screenshot(browser, server, page_name):
    page = _open(browser, server, page_name, DESKTOP)
    _screenshot(page, page_name, 1280)
    page.close()


# --- 8. smaller items ------------------------------------------------------------------------


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_chapter_11_diffs_colour_added_and_removed_lines(browser, server, theme):
    page = _open(browser, server, "notebooks/11_qk_norm", DESKTOP)
    page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
    styles = page.evaluate(
        """() => Object.fromEntries(['.highlight .gi', '.highlight .gd', '.highlight pre'].map(s => {
             const style = getComputedStyle(document.querySelector(s));
             return [s, [style.color, style.backgroundColor]];
           }))"""
    )
    plain = styles[".highlight pre"][0]
    added, removed = styles[".highlight .gi"], styles[".highlight .gd"]
    assert added[0] != plain, f"{theme}: added lines have the plain text colour {plain}"
    assert removed[0] != plain, f"{theme}: removed lines have the plain text colour {plain}"
    assert added[1] not in ("rgba(0, 0, 0, 0)", "transparent"), f"{theme}: added lines are not shaded"
    assert removed[1] not in ("rgba(0, 0, 0, 0)", "transparent"), f"{theme}: removed lines are not shaded"
    assert added != removed
    page.close()


def test_printed_output_of_one_cell_is_one_box(build_log):
    split = []
    for page_name in CHAPTERS:
        for output in _soup(page_name).select("div.cell_output"):
            streams = output.find_all("div", class_="stream", recursive=False)
            if len(streams) > 1:
                split.append(f"{page_name}: {[s.get_text()[:40] for s in streams]}")
    assert not split, "\n".join(split)


def test_every_page_has_a_favicon(browser, server):
    page = browser.new_page(viewport=DESKTOP)
    for page_name in PAGES:
        page.goto(urljoin(server, f"{page_name}.html"), wait_until="load")
        icons = page.eval_on_selector_all("link[rel~='icon']", "links => links.map(l => l.href)")
        assert icons, f"{page_name} names no favicon (the browser then asks for /favicon.ico: a 404)"
        response = page.request.get(icons[0])
        assert response.ok and response.headers["content-type"].startswith("image/"), icons[0]
    page.close()


# --- 9. chapter 9 carries no unused widget state ---------------------------------------------


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapter_9_has_no_widget_state_and_loads_no_widget_scripts(browser, server, edition):
    soup = _soup(f"{edition}notebooks/09_explorer")
    assert not soup.select("script[type='application/vnd.jupyter.widget-state+json']")
    sources = [s.get("src", "") for s in soup.find_all("script")]
    assert not [s for s in sources if "require" in s or "html-manager" in s or "embed-amd" in s], sources

    requested = []
    page = browser.new_page(viewport=DESKTOP)
    page.on("request", lambda r: requested.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server) else route.abort())
    page.goto(urljoin(server, f"{edition}notebooks/09_explorer.html"), wait_until="load")
    assert not [u for u in requested if "require" in u or "html-manager" in u or "embed-amd" in u], requested
    page.close()


# --- 10. the site needs no network: MathJax is served with it --------------------------------


@pytest.mark.parametrize("page_name", PAGES)
def test_page_requests_nothing_off_the_site(browser, server, page_name):
    offsite = []
    page = _open(browser, server, page_name, DESKTOP, offsite)
    page.close()
    assert not offsite, f"{page_name} asks the network for {offsite}"


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapter_4_maths_render_offline(browser, server, edition):
    page = _open(browser, server, f"{edition}notebooks/04_rope", DESKTOP)
    page.wait_for_selector("mjx-container", timeout=10000)
    text = page.locator("main").inner_text()
    assert "\\(" not in text and "\\begin" not in text, "raw TeX is visible"
    assert page.locator("mjx-container").count() >= 10
    assert page.locator("mjx-merror").count() == 0, "MathJax could not typeset an expression"
    page.close()


@pytest.mark.parametrize("page_name", CHAPTERS)
def test_figures_are_not_shrunk_past_reading(browser, server, page_name):
    """A figure drawn much wider than the column is shrunk on the page, and its text with it."""
    page = _open(browser, server, page_name, DESKTOP)
    sizes = page.eval_on_selector_all(
        "article img", "imgs => imgs.map(i => [i.src, i.naturalWidth, i.getBoundingClientRect().width])"
    )
    page.close()
    shrunk = [(src.rsplit("/", 1)[-1], natural, round(shown)) for src, natural, shown in sizes if natural > 1.6 * shown]
    assert not shrunk, f"{page_name}: figures shrunk more than 1.6x: {shrunk}"


@pytest.mark.parametrize("page_name", CHAPTERS)
def test_every_figure_says_what_it_shows(build_log, page_name):
    """A figure's alt text describes it (cell metadata mystnb.image.alt), not its hashed file name."""
    images = _soup(page_name).select("main .cell_output img")
    for image in images:
        alt = image.get("alt", "")
        assert "_images/" not in alt and not alt.endswith(".png"), f"{page_name}: alt text is a file name: {alt}"
        assert len(alt.split()) >= 8, f"{page_name}: {image.get('src')} has no real alt text ({alt!r})"


# --- 9. on a phone: wide boxes say they scroll, shrunk figures open at full size, titles ------


def _edges(page, selector):
    """For each box matching `selector`: does it scroll sideways, and are its left/right shadows shown?"""
    return page.eval_on_selector_all(
        selector,
        """boxes => boxes.map(box => {
             const [left, right] = box.attnvizEdges || [null, null];
             const shown = e => !!e && !e.hidden && e.getBoundingClientRect().width > 0;
             const r = box.getBoundingClientRect(), e = right && right.getBoundingClientRect();
             return {scrolls: box.scrollWidth > box.clientWidth + 1, left: shown(left), right: shown(right),
                     atRightEdge: !!e && Math.abs(e.right - r.right) <= 1 && Math.abs(e.top - r.top) <= 1,
                     text: box.textContent.slice(0, 40)};
           })""",
    )


@pytest.mark.parametrize("edition", EDITIONS)
def test_boxes_that_scroll_sideways_show_a_shadow_on_the_hidden_side(browser, server, edition):
    """On a phone, code and printed output wider than the screen get a shadow on their right edge;
    scrolled to the end, the shadow moves to the left edge. A box that fits shows none."""
    page = _open(browser, server, f"{edition}notebooks/01_llama_attention", PHONE)
    boxes = _edges(page, ".bd-article pre")
    wide = [b for b in boxes if b["scrolls"]]
    narrow = [b for b in boxes if not b["scrolls"]]
    assert wide and narrow, "chapter 1 at 390 px should have code that fits and code that does not"
    assert all(b["right"] and b["atRightEdge"] and not b["left"] for b in wide), [b for b in wide if not b["right"]]
    assert not any(b["right"] or b["left"] for b in narrow), [b for b in narrow if b["right"] or b["left"]]
    # the reader scrolls the first wide box to its end
    index = [b["scrolls"] for b in boxes].index(True)
    page.eval_on_selector_all(".bd-article pre", f"boxes => boxes[{index}].scrollTo({{left: 1e6}})")
    page.wait_for_timeout(100)
    after = _edges(page, ".bd-article pre")[index]
    assert after["left"] and not after["right"], after
    page.close()


def test_the_recipe_table_keeps_its_names_in_view_while_it_scrolls_on_a_phone(browser, server):
    page = _open(browser, server, "notebooks/10_recipes_in_the_wild", PHONE)
    box = page.locator(".attnviz-table-scroll")
    assert box.count() == 1
    assert _edges(page, ".attnviz-table-scroll")[0]["right"], "no shadow on a table that scrolls"
    name = page.locator("table.attnviz-recipes tbody th").first
    before = name.bounding_box()["x"]
    box.evaluate("b => b.scrollTo({left: 200})")
    page.wait_for_timeout(100)
    assert abs(name.bounding_box()["x"] - before) <= 1, "the recipe names scrolled away with the releases"
    assert _edges(page, ".attnviz-table-scroll")[0]["left"]
    page.close()


@pytest.mark.parametrize("edition", EDITIONS)
def test_a_figure_shrunk_on_a_phone_opens_at_full_size(browser, server, edition):
    page = _open(browser, server, f"{edition}notebooks/02_eager_attention", PHONE)
    figure = page.locator(".bd-article .cell_output img.attnviz-zoomable").first
    natural = figure.evaluate("i => i.naturalWidth")
    assert natural > 1.25 * figure.bounding_box()["width"]
    button = page.locator("button.attnviz-zoom-open:visible").first
    assert button.inner_text() == ("点按放大" if edition else "Tap to enlarge")
    button.click()
    dialog = page.locator("dialog.attnviz-zoom")
    assert dialog.evaluate("d => d.open")
    shown = page.locator("dialog.attnviz-zoom img")
    assert abs(shown.bounding_box()["width"] - natural) <= 1, "the enlarged figure is not at its own width"
    assert shown.get_attribute("alt") == figure.get_attribute("alt")
    body = page.locator(".attnviz-zoom-body")
    assert body.evaluate("b => b.scrollWidth > b.clientWidth"), "a figure wider than the phone must scroll"
    page.keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open")
    figure.click()  # the figure itself opens it too
    assert dialog.evaluate("d => d.open")
    page.locator("button.attnviz-zoom-close").click()
    assert not dialog.evaluate("d => d.open")
    page.close()


def test_a_figure_shown_at_its_own_size_offers_no_enlargement(browser, server):
    page = _open(browser, server, "notebooks/02_eager_attention", DESKTOP)
    assert page.locator(".bd-article .cell_output img").count() >= 2
    assert page.locator("button.attnviz-zoom-open:visible").count() == 0
    assert page.locator("img.attnviz-zoomable").count() == 0
    page.close()


# A line of a title or of inline code may end after a space, `_`, `.`, `/`, punctuation or a
# CJK character; inside a word only where that piece alone is wider than its line.
_BREAKS = r"""(element) => {
  const chars = [];
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode()); ) {
    if (node.parentElement.closest('.headerlink')) continue;
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      const last = chars.length ? chars[chars.length - 1] : [' ', 0, 0];
      // a space where a line ends has no box: it still separates the words
      if (rect) chars.push([node.data[i], rect.top, rect.width]);
      else if (/\s/.test(node.data[i])) chars.push([node.data[i], last[1], 0]);
    }
  }
  const free = /[\s_.,:;(\/\u2e80-\u9fff\u3000-\u303f\uff00-\uffef-]/;
  const line = element.closest('h1, h2, h3, h4, p, li, dd, td, th, div').clientWidth;
  const text = (part) => part.map(c => c[0]).join('');
  const bad = [];
  for (let i = 1; i < chars.length; i++) {
    const [prev, top] = chars[i - 1];
    if (!(chars[i][1] > top + 4) || free.test(prev) || free.test(chars[i][0])) continue;
    let start = i - 1, end = i;
    while (start > 0 && !free.test(chars[start - 1][0])) start--;
    while (end < chars.length - 1 && !free.test(chars[end + 1][0])) end++;
    const piece = chars.slice(start, end + 1);
    if (piece.reduce((sum, c) => sum + c[2], 0) <= line)  // a piece that fits a line is not cut
      bad.push(text(piece.slice(0, i - start)) + ' / ' + text(piece.slice(i - start)));
  }
  return bad;
}"""


def _breaks_on_a_phone(browser, server, page_name, selector, script):
    """What `script` reports for each element matching `selector`, on the page at 390 px."""
    page = _open(browser, server, page_name, PHONE)
    found = [b for element in page.locator(selector).all() for b in element.evaluate(script)]
    page.close()
    return found


@pytest.mark.parametrize("page_name", CHAPTERS)
def test_titles_do_not_break_inside_a_word_on_a_phone(browser, server, page_name):
    """`eager_attention_forward` in a title broke as "eager_attention" / "_forward" at 390 px."""
    bad = _breaks_on_a_phone(browser, server, page_name, ".bd-article :is(h1, h2, h3)", _BREAKS)
    assert not bad, f"{page_name}: titles broken inside a word: {bad}"


@pytest.mark.parametrize("page_name", CHAPTERS)
def test_every_chapter_reaches_a_picture_within_its_first_screen(browser, server, page_name):
    """Pictures before code: a figure (or the live explorer's heatmap) starts on the first screen."""
    page = _open(browser, server, page_name, DESKTOP)
    tops = page.eval_on_selector_all(
        ".bd-article .cell_output img, .bd-article .attnviz-static canvas.heatmap",
        "pictures => pictures.map(p => p.getBoundingClientRect().top + window.scrollY)",
    )
    page.close()
    assert tops, f"{page_name} has no picture"
    assert min(tops) < DESKTOP["height"], f"{page_name}: the first picture starts at {min(tops):.0f} px"


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_one_search_box_and_no_empty_top_bar(browser, server, edition, viewport):
    """pydata-sphinx-theme drew a top bar holding only a second search box (sphinx-book-theme#986)."""
    page = _open(browser, server, f"{edition}notebooks/04_rope", viewport)
    assert page.locator("#pst-header:visible").count() == 0, "the theme's top bar is back"
    searches = page.locator(".search-button-field:visible, .search-button:visible")
    assert searches.count() == 1, f"{searches.count()} visible search boxes or buttons"
    searches.first.click()
    page.wait_for_selector("input[name='q']:visible", timeout=3000)  # the search dialog opens
    page.close()


@pytest.mark.parametrize(
    ("page_name", "line_start"),
    [
        ("notebooks/08_inputs_embeds_backbone", "test energy distance"),
        ("notebooks/13_performance", "peak memory, "),
    ],
)
def test_printed_key_numbers_are_on_a_phone_s_screen(browser, server, page_name, line_start):
    """The number a printed table exists for is in view at 390 px, without scrolling the box."""
    page = _open(browser, server, page_name, PHONE)
    box = page.locator(".cell_output pre", has_text=line_start).first
    fits = box.evaluate("pre => pre.scrollWidth <= pre.clientWidth")
    assert fits, f"{page_name}: the output starting {line_start!r} scrolls sideways on a phone"
    page.close()


@pytest.mark.parametrize("page_name", CHAPTERS)
def test_inline_code_does_not_break_inside_a_word_on_a_phone(browser, server, page_name):
    """`llama` in a module path broke as "lla" / "ma", `attention` as "attenti" / "on", at 390 px."""
    bad = _breaks_on_a_phone(browser, server, page_name, ".bd-article code.literal", _BREAKS)
    assert not bad, f"{page_name}: inline code broken inside a word: {bad}"


@pytest.mark.parametrize("edition", EDITIONS)
def test_next_and_previous_links_take_the_phone_s_width(browser, server, edition):
    """Side by side, chapter 2's title in the next link wrapped one word a line at 390 px."""
    page = _open(browser, server, f"{edition}notebooks/01_llama_attention", PHONE)
    prev, following = (page.locator(f".prev-next-area a.{side}").bounding_box() for side in ("left-prev", "right-next"))
    title = page.locator(".prev-next-area a.right-next .prev-next-title").bounding_box()
    page.close()
    assert following["y"] >= prev["y"] + prev["height"] - 1, "the next link sits beside the previous one"
    assert title["width"] > 0.6 * PHONE["width"], f"the next title is {title['width']:.0f} px wide"
