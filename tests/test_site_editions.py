"""The two editions as a reader meets them: the language switch, the theme's language, search.

The English book is the site's root and the Chinese edition is zh/ of it (scripts/build_book.py).
"""

import json
import re
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
import test_site
import yaml
from conftest import HTML, PAGES, ROOT, SITE_PAGES, ZH_PAGES

pytestmark = [pytest.mark.book, pytest.mark.browser]

browser = test_site.browser
server = test_site.server
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
UNTRANSLATED = yaml.safe_load((ROOT / "zh" / "translations.yml").read_text(encoding="utf-8"))["untranslated"]


def _counterpart(page_name: str) -> str:
    """Where the switch on a page must lead: the same page in the other edition, else its first page."""
    if page_name.startswith("zh/"):
        name = page_name.removeprefix("zh/")
        return name if name in PAGES else PAGES[0]
    return f"zh/{page_name}" if f"zh/{page_name}" in ZH_PAGES else ZH_PAGES[0]


def _switch(page):
    switch = page.locator("a.attnviz-language-switch:visible")
    assert switch.count() == 1, "one visible language switch"
    return switch


@pytest.mark.parametrize("width", [390, 1280])
def test_the_language_switch_on_every_page_lands_on_the_same_page_in_the_other_edition(browser, server, width):
    page = browser.new_page(viewport={"width": width, "height": 844})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    wrong = []
    for page_name in SITE_PAGES:
        page.goto(urljoin(server, f"{page_name}.html"), wait_until="domcontentloaded")
        _switch(page).click()
        page.wait_for_load_state("domcontentloaded")
        expected = urljoin(server, f"{_counterpart(page_name)}.html")
        language = page.evaluate("document.documentElement.lang")
        if page.url != expected or language != ("en" if page_name.startswith("zh/") else "zh-CN"):
            wrong.append(f"{page_name} -> {page.url} (lang {language}); expected {expected}")
    page.close()
    assert not wrong, "\n".join(wrong)
    assert not errors, errors


def test_the_language_switch_works_from_disk(browser, build_log):
    page = browser.new_page(viewport=DESKTOP)
    page.goto((HTML / "zh" / "notebooks" / "04_rope.html").as_uri())
    _switch(page).click()
    page.wait_for_load_state("domcontentloaded")
    assert page.url == (HTML / "notebooks" / "04_rope.html").as_uri()
    _switch(page).click()
    page.wait_for_load_state("domcontentloaded")
    assert page.url == (HTML / "zh" / "notebooks" / "04_rope.html").as_uri()
    page.close()


@pytest.mark.parametrize(
    ("edition", "lang", "words"),
    [("", "en", ("Search", "Search this book", "Contents")), ("zh/", "zh-CN", ("搜索", "搜索本书", "目录"))],
)
def test_the_theme_speaks_the_editions_language(browser, server, edition, lang, words):
    search, placeholder, contents = words
    page = browser.new_page(viewport=DESKTOP)
    page.goto(urljoin(server, f"{edition}notebooks/04_rope.html"))
    assert page.evaluate("document.documentElement.lang") == lang
    assert search in page.locator(".search-button__default-text").first.text_content()
    page.locator(".search-button-field").first.click()  # the search dialog, with its input field
    assert placeholder in page.locator("input[name='q']:visible").first.get_attribute("placeholder")
    assert contents in page.locator(".onthispage").first.text_content()
    page.close()


def _search(browser, server, edition, query):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(urljoin(server, f"{edition}search.html?q={quote(query)}"))
    page.wait_for_function(
        "document.querySelector('#search-results p, #search-results .search-summary')"
        " && !document.querySelector('#search-results').classList.contains('searching')"
        " && (document.querySelectorAll('#search-results li').length > 0"
        "     || /(did not match|没有)/.test(document.querySelector('#search-results').innerText))",
        timeout=20000,
    )
    links = page.eval_on_selector_all("#search-results li a", "links => links.map(a => a.href)")
    page.close()
    return links


@pytest.mark.parametrize("query", ["因果掩码", "注意力权重", "词元"])
def test_searching_a_chinese_word_finds_chinese_pages_only(browser, server, query):
    links = _search(browser, server, "zh/", query)
    assert links, f"searching the Chinese edition for {query!r} found nothing"
    assert all(link.startswith(urljoin(server, "zh/")) for link in links), links


def test_the_english_search_stays_in_the_english_edition(browser, server):
    links = _search(browser, server, "", "causal mask")
    assert links and not [link for link in links if "/zh/" in link], links


@pytest.mark.parametrize("page_name", ZH_PAGES)
def test_untranslated_text_is_marked_and_translated_pages_are_not(browser, server, page_name):
    page = browser.new_page(viewport=PHONE)
    page.goto(urljoin(server, f"{page_name}.html"))
    markers = page.locator("main .attnviz-untranslated")
    if page_name.removeprefix("zh/") in UNTRANSLATED:
        assert markers.count() >= 1 and markers.first.is_visible(), f"{page_name}: no 待翻译 marker shown"
        assert "待翻译" in markers.first.inner_text()
    else:
        assert markers.count() == 0, f"{page_name} shows {markers.count()} 待翻译 marker(s)"
    page.close()


def _index_terms(folder: Path) -> dict:
    text = (folder / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])["terms"]


def test_the_chinese_edition_has_its_own_title_and_search_index(build_log):
    intro = (HTML / "zh" / "book" / "intro.html").read_text(encoding="utf-8")
    assert "<title>attnviz：" in intro
    terms = _index_terms(HTML / "zh")
    assert "因果掩码" in terms, "the glossary's terms are words of the Chinese search index"
    assert "因果" in terms  # and the parts jieba splits it into
    # without a Chinese word splitter the index holds whole clauses ("你会掌握后面每一章都默认…"),
    # which a search for a word inside them never finds
    chinese = [term for term in terms if re.fullmatch(r"[\u4e00-\u9fff]+", term)]
    assert max(map(len, chinese)) <= 8, sorted(chinese, key=len)[-3:]
    assert "因果掩码" not in _index_terms(HTML)


def test_folded_code_is_labelled_in_the_editions_language(build_log):
    zh = (HTML / "zh" / "notebooks" / "05_masks_and_backends.html").read_text(encoding="utf-8")
    en = (HTML / "notebooks" / "05_masks_and_backends.html").read_text(encoding="utf-8")
    assert "Show code cell source" in en and "Show code cell" not in zh
    assert "显示代码" in zh and "隐藏代码" in zh
