"""The book builds with zero warnings, and the built site has what a reader needs."""

import re

import pytest
import yaml
from bs4 import BeautifulSoup
from conftest import CHAPTERS, EDITIONS, HTML, ROOT

import attnviz

pytestmark = pytest.mark.book

# Sphinx writes "path:line: WARNING: ..." and "WARNING: ..."; "[App] WARNING |" comes from kernels.
WARNING = re.compile(r"(^|: |\] )(WARNING|ERROR)\b", re.MULTILINE)


def test_build_log_has_no_warnings(build_log):
    found = [line for line in build_log.splitlines() if WARNING.search(line)]
    assert not found, "\n".join(found)
    assert "build succeeded" in build_log


def _page(name):
    return BeautifulSoup((HTML / name).read_text(encoding="utf-8"), "html.parser")


def _repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    return url.removeprefix("https://github.com/"), config["repository"]["branch"]


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_chapter_is_built_with_a_figure(build_log, edition):
    for notebook in CHAPTERS:
        page = _page(f"{edition}notebooks/{notebook.stem}.html")
        figures = [img for img in page.select("main img") if "_images/" in img.get("src", "")]
        assert figures, f"{edition}{notebook.stem}: no figure on the page"
        assert (HTML / edition / "notebooks" / figures[0]["src"]).resolve().is_file()


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapters_have_binder_and_colab_launch_buttons(build_log, edition):
    """A Chinese chapter's buttons open the Chinese notebook (zh/notebooks/...)."""
    repo, branch = _repository()
    for notebook in CHAPTERS:
        hrefs = [a.get("href", "") for a in _page(f"{edition}notebooks/{notebook.stem}.html").find_all("a")]
        path = f"{edition}notebooks/{notebook.name}"
        assert f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=tree/{path}" in hrefs
        assert f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}" in hrefs


@pytest.mark.parametrize("edition", EDITIONS)
def test_intro_states_the_versions_it_was_built_with(build_log, edition):
    text = _page(f"{edition}book/intro.html").get_text()
    for name in ("torch", "transformers"):
        version = attnviz.versions(warn=False)[name]
        assert re.search(rf"{name}\s+{re.escape(version)}", text), f"intro does not print {name} {version}"


@pytest.mark.parametrize("edition", EDITIONS)
def test_intro_links_every_chapter(build_log, edition):
    links = {a.get("href", "").split("#")[0] for a in _page(f"{edition}book/intro.html").select("main a")}
    for notebook in CHAPTERS:
        assert f"../notebooks/{notebook.stem}.html" in links


def test_no_error_output_on_any_page(build_log):
    for page in HTML.rglob("*.html"):
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        assert not soup.select(".output.traceback, .output.error"), f"{page} shows an error"
