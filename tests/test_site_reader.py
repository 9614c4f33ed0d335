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
        for n in ("05_masks_and_backends", "06_patch_across_versions", "07_the_patch_that_works")
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
