"""A small Sphinx extension for the attnviz book.

sphinx-thebe (which Jupyter Book 1.x always loads) registers its inline configuration script
each time its setup event fires; with notebook execution that can happen twice, and the page
then declares `const THEBE_JS_URL` twice, a JavaScript SyntaxError on every page. This drops
exact duplicate <script> entries from each page before it is written.
"""


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


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
