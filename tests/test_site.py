"""The built site as a reader meets it: headless Chromium (Debian's) driven by Playwright.

`make test` installs chromium with apt when it is missing. Screenshots of every page, at 1280 px
and 390 px, land in _build/screenshots/ (tests/test_site_reader.py takes them). Every page means
both editions: the English pages, then the Chinese ones under zh/.
"""

import functools
import http.server
import os
import re
import shutil
import threading
from urllib.parse import urljoin, urlparse

import pytest
from conftest import EDITIONS, HTML, SITE_PAGES

PAGES = SITE_PAGES
pytestmark = [pytest.mark.book, pytest.mark.browser]

# Debian's chromium by default; ATTNVIZ_CHROMIUM names another Chromium-based browser (e.g. on CI images).
CHROMIUM = os.environ.get("ATTNVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(build_log):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))

    class Quiet(handler.func):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("page_name", PAGES)
def test_page_loads_cleanly_with_its_images(browser, server, page_name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, failed = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: failed.append(request.url))
    response = page.goto(urljoin(server, f"{page_name}.html"), wait_until="load")
    assert response.status == 200
    assert not errors, f"JavaScript errors on {page_name}: {errors}"
    local_failures = [url for url in failed if url.startswith(server)]
    assert not local_failures, f"{page_name}: requests failed: {local_failures}"

    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.complete && i.naturalWidth > 0])")
    broken = [src for src, ok in images if not ok]
    assert not broken, f"{page_name}: images that did not load: {broken}"
    page.close()


@pytest.mark.parametrize("page_name", [p for p in PAGES if "notebooks/" in p])
def test_chapters_offer_binder_and_colab(browser, server, page_name):
    page = browser.new_page()
    page.goto(urljoin(server, f"{page_name}.html"))
    hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.href)")
    assert any(h.startswith("https://mybinder.org/v2/gh/") and page_name in h for h in hrefs)
    assert any(h.startswith("https://colab.research.google.com/github/") and page_name in h for h in hrefs)
    page.close()


def test_internal_links_resolve(browser, server):
    page = browser.new_page()
    seen, broken = set(), []
    for page_name in PAGES:
        page.goto(urljoin(server, f"{page_name}.html"))
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            url = href.split("#")[0]
            if not url.startswith(server) or url in seen:
                continue
            seen.add(url)
            path = HTML / urlparse(url).path.lstrip("/")
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page_name} -> {href}")
    page.close()
    assert seen, "no internal links found"
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("edition", EDITIONS)
def test_kernel_free_explorer_redraws_on_a_toggle(browser, server, edition):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(urljoin(server, f"{edition}notebooks/09_explorer.html"))
    page.wait_for_selector(".attnviz-static[data-state=ready]", timeout=30000)  # the model runs in the page
    canvas = page.locator(".attnviz-static canvas")
    assert canvas.count() == 1
    before = canvas.evaluate("c => c.toDataURL()")
    assert canvas.get_attribute("data-variant") == "causal + RoPE"
    page.locator(".attnviz-static input[value='bidirectional']").check()
    after = canvas.evaluate("c => c.toDataURL()")
    assert canvas.get_attribute("data-variant") == "bidirectional + RoPE"
    assert after != before, "toggling bidirectional did not change the drawing"
    page.locator(".attnviz-static select.layer").select_option("1")
    assert canvas.evaluate("c => c.toDataURL()") != after
    assert not errors, errors
    page.close()


@pytest.mark.parametrize("page_name", PAGES)
def test_pages_stay_small(build_log, page_name):
    page = HTML / f"{page_name}.html"
    size = page.stat().st_size
    images = set(re.findall(r'src="([^"]+\.(?:png|jpg|svg))"', page.read_text(encoding="utf-8")))
    size += sum((page.parent / src).stat().st_size for src in images if (page.parent / src).is_file())
    assert size <= 1.5 * 2**20, f"{page_name}: {size / 2**20:.2f} MB with its images"
