"""A small Sphinx extension for the attnviz book: what the site needs that the themes get wrong.

- Drops duplicate <script> entries. sphinx-thebe (which Jupyter Book 1.x always loads) registers
  its inline configuration script each time its setup event fires; with notebook execution that
  can happen twice, and the page then declares `const THEBE_JS_URL` twice, a JavaScript
  SyntaxError on every page.
- Ships `static/`: the sidebar-button fix (attnviz-site.js), the site's CSS and the favicon.
- Keeps launch buttons to chapters: Colab and Binder open a `.ipynb`, not a MyST `.md` page.
- Drops the ipywidgets state and scripts from a page that shows no widget: chapter 9 builds a
  live explorer, and its state would make the page pull require.js and the widget manager
  from a CDN for nothing.
- Serves MathJax from the site itself (from the pinned `django-static-mathjax` wheel, MathJax's
  own distribution), so the maths render with no network.
- Runs the demo model in the page: writes `attnviz.view.write_site_assets` into `_static` (the
  model's two scripts, converted from the package's checkpoint at each build and never committed,
  and the explorer's own script and style) and adds them, as `<script defer src>` and a
  stylesheet, to the pages that show a live explorer (`attnviz.view.LIVE_MARKER`). Script tags,
  not fetch: they load from the site's own origin and from a site opened from disk. Being files
  rather than inline, a change to the explorer reaches the site without re-running chapter 9.
- Lets inline code names break at `_`, `.` and `/` (a <wbr> there), not mid-word on a phone.
- Adds the language switch (English <-> 中文) to every page's header, when the configuration
  names the other edition (`attnviz_other_edition`): a relative link to the same page there, or
  to its first page when it has no such page, so it works over http and from disk alike.
"""

import logging
import re
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

STATIC = Path(__file__).resolve().parent / "static"
TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# MathJax's es5/ folder, less the combined bundles the site does not load (15 MB)
MATHJAX_BUNDLE = "tex-mml-chtml.js"
MATHJAX_FOLDERS = ("a11y", "adaptors", "input", "output", "sre", "ui")


def _add_static(app, config):
    config.html_static_path.append(str(STATIC))


def _mathjax_es5() -> Path:
    try:
        import mathjax  # django-static-mathjax: MathJax 3's files, no Django needed
    except ImportError:
        raise ExtensionError(
            "the book serves MathJax itself, from the django-static-mathjax package: "
            "pip install -r requirements.txt (or `make book`, which does)"
        ) from None
    return Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"


def _check_mathjax(app, config):
    _mathjax_es5()  # fail at the start of a build, not after every chapter has run


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        # the same inline script is registered once with filename None and once with ""
        filename = getattr(script, "filename", str(script)) or ""
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _launch_buttons_only_for_notebooks(app, pagename, templatename, context, doctree):
    if pagename in app.env.all_docs and str(app.env.doc2path(pagename)).endswith(".ipynb"):
        return
    buttons = context.get("header_buttons")
    if buttons:
        context["header_buttons"] = [b for b in buttons if b.get("label") != "launch-buttons"]


def _drop_unused_widget_state(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts or WIDGET_VIEW in context.get("body", ""):
        return
    widget_js = tuple(app.config.nb_ipywidgets_js)
    kept = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        filename = getattr(script, "filename", str(script)) or ""
        if attributes.get("type") == WIDGET_STATE or (filename and filename in widget_js):
            continue
        kept.append(script)
    context["script_files"] = kept


def _write_live_view_assets(app):
    # at the start, so that the pages written later find the files (Sphinx then adds a checksum
    # to their URLs, the same in every build)
    if app.builder.format != "html":
        return
    from attnviz.view import write_site_assets

    app.attnviz_live_assets = write_site_assets(Path(app.outdir) / "_static")


def _live_view_assets(app, pagename, templatename, context, doctree):
    from attnviz.view import LIVE_MARKER

    if LIVE_MARKER not in context.get("body", ""):
        return
    scripts, stylesheets = app.attnviz_live_assets
    # in this order (the engine reads the weights, the view the engine); defer lets the page show
    # before the 1.5 MB of weights are parsed, and the view starts once they are
    for name in scripts:
        app.add_js_file(name, defer="defer")
    for name in stylesheets:
        app.add_css_file(name)


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    es5 = _mathjax_es5()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    copy_asset(str(es5 / MATHJAX_BUNDLE), str(target))
    for folder in MATHJAX_FOLDERS:
        copy_asset(str(es5 / folder), str(target / folder))


def _other_pages(app) -> list[str]:
    """The other edition's pages, from its _toc.yml (its root page first)."""
    import yaml

    other = app.config.attnviz_other_edition
    toc = yaml.safe_load((Path(app.srcdir) / other["toc"]).read_text(encoding="utf-8"))
    return [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


def _add_language_switch(app, config):
    other = config.attnviz_other_edition
    if not other:
        return
    missing = {"label", "lang", "path", "toc"} - set(other)
    if missing:
        raise ExtensionError(f"attnviz_other_edition needs {sorted(missing)}; got {other}")
    app.attnviz_other_pages = _other_pages(app)
    config.templates_path.append(str(TEMPLATES))
    # before the theme's own header buttons, where a reader looks for it on a phone too
    header_end = config.html_theme_options.get("article_header_end") or ["article-header-buttons.html"]
    if isinstance(header_end, str):
        header_end = [name.strip() for name in header_end.split(",") if name.strip()]
    config.html_theme_options["article_header_end"] = ["attnviz-language-switch.html", *header_end]


def _add_theme_options(app, config):
    # Jupyter Book's _config.yml reaches only some theme options; an edition sets others here
    # (the Chinese one: the search field's placeholder, which the theme does not translate)
    config.html_theme_options.update(config.attnviz_theme_options or {})
    # No top bar: pydata-sphinx-theme 0.17 fills an unset navbar_persistent with a search field,
    # which makes it draw its header (#pst-header) holding nothing but a second search box above
    # the book theme's own (sidebar field, article-header button). An empty list keeps the header
    # out of the page; https://github.com/executablebooks/sphinx-book-theme/issues/986
    config.html_theme_options.setdefault("navbar_persistent", [])


def _check_chinese_search(app, config):
    if not (config.language or "").startswith("zh"):
        return
    try:
        import jieba  # Sphinx's Chinese search index splits words with it, and is empty of Chinese without it
    except ImportError:
        raise ExtensionError(
            "the Chinese edition's search index needs jieba: pip install -r requirements.txt"
        ) from None
    jieba.setLogLevel(logging.WARNING)  # it reports loading its dictionary on every build


def _language_switch(app, pagename, templatename, context, doctree):
    other = app.config.attnviz_other_edition
    if not other:
        return
    pages = app.attnviz_other_pages
    target = pagename if pagename in pages else pages[0]
    href = "../" * pagename.count("/") + other["path"] + target + ".html"
    context["attnviz_language_switch"] = {"href": href, "label": other["label"], "lang": other["lang"]}
    link = f'<link rel="alternate" hreflang="{other["lang"]}" href="{href}" />\n'
    context["metatags"] = context.get("metatags", "") + link


# A dot, underscore or slash between two letters or digits of inline code: a place to break.
_CODE_BREAK = re.compile(r"(?<=[A-Za-z0-9])([_./])(?=[A-Za-z0-9])")
_PRE = re.compile(r'(<span class="pre">)(.*?)(</span>)', re.S)


def _breakable(html: str) -> str:
    """Inline code in `html` with a <wbr> after each inner `_`, `.` and `/`."""
    return _PRE.sub(lambda m: m[1] + _CODE_BREAK.sub(r"\1<wbr>", m[2]) + m[3], html)


def _break_code_names(app, pagename, templatename, context, doctree):
    """Let inline code names break at `_`, `.` and `/`, not inside a word.

    On a phone, `eager_attention_forward` in chapter 2's title, `attnviz.bidirectional` in a
    sentence or a source file's path are wider than what is left of a line. The site lets inline
    code break anywhere so it never widens the page, which cut names mid-word ("eager_attention" /
    "_forward", "attnviz.bidirec" / "tional"). A <wbr> after each inner underscore, dot and slash
    gives the browser better places: it breaks anywhere else only when one piece alone is wider
    than the line. Done in the HTML (titles, text, printed Markdown, the next/previous links), not
    in a script, so nothing jumps as the page loads.
    """
    if "body" in context:
        context["body"] = _breakable(context["body"])
    for link in ("prev", "next"):
        if context.get(link) and context[link].get("title"):
            context[link]["title"] = _breakable(context[link]["title"])


def _translate_code_prompts(app, pagename, templatename, context, doctree):
    """The Chinese edition's labels of folded code ("Show code cell source" -> "显示代码").

    myst-nb writes them from one English template (``nb_code_prompt_show``, with the cell's hide
    mode put in for ``{type}``), so a translated template would still end in "source" or
    "content"; the finished labels are swapped instead, from zh/translations.yml's code_prompts.
    """
    prompts = app.config.attnviz_code_prompts
    if prompts and "body" in context:
        for english, translated in prompts.items():
            context["body"] = context["body"].replace(english, translated)


def setup(app):
    app.add_config_value("attnviz_other_edition", None, "html")
    app.add_config_value("attnviz_theme_options", None, "html")
    app.add_config_value("attnviz_code_prompts", {}, "html")
    app.connect("config-inited", _add_theme_options)
    app.connect("config-inited", _add_language_switch)
    app.connect("config-inited", _check_chinese_search)
    app.connect("html-page-context", _language_switch)
    app.connect("html-page-context", _break_code_names)
    app.connect("html-page-context", _translate_code_prompts)
    app.connect("config-inited", _add_static)
    app.connect("config-inited", _check_mathjax)
    app.add_css_file("attnviz-site.css")
    app.add_js_file("attnviz-site.js")
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", _launch_buttons_only_for_notebooks, priority=900)
    app.connect("html-page-context", _drop_unused_widget_state, priority=900)
    # before _drop_duplicate_scripts, which hands the page a new list of scripts
    app.connect("html-page-context", _live_view_assets, priority=500)
    app.connect("build-finished", _copy_mathjax)
    app.connect("builder-inited", _write_live_view_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
