"""The Chinese edition (zh/) stays in step with the English book (scripts/translations.py).

The checks that edit an English chapter do it on a copy of the book's sources in a temporary
folder, never on the real chapters.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import translations  # scripts/, which conftest puts on sys.path
import yaml
from booklayout import toc_pages
from conftest import CHAPTERS, ROOT

ZH = ROOT / "zh"
CHAPTER_0 = "notebooks/00_attention_in_one_picture"


def _nb(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb):
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chinese_code_cells_are_the_english_ones_byte_for_byte(path):
    english, chinese = _nb(path), _nb(ZH / "notebooks" / path.name)
    assert json.dumps(_code_cells(chinese)) == json.dumps(_code_cells(english))
    assert [c["id"] for c in chinese["cells"]] == [c["id"] for c in english["cells"]]
    assert chinese["metadata"]["kernelspec"] == english["metadata"]["kernelspec"]  # jupyter-cache hashes it


def test_prose_pages_keep_the_english_code_cells():
    english = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    chinese = (ZH / "book" / "intro.md").read_text(encoding="utf-8")
    assert translations.CODE_CELL.findall(chinese) == translations.CODE_CELL.findall(english)
    assert translations.CODE_CELL.findall(english), "the intro prints the versions from a code cell"


def test_the_chinese_toc_mirrors_the_english_one():
    english = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chinese = yaml.safe_load((ZH / "_toc.yml").read_text(encoding="utf-8"))
    extra = yaml.safe_load((ZH / "translations.yml").read_text(encoding="utf-8"))["extra_parts"]
    assert chinese["root"] == english["root"] and chinese["format"] == english["format"]
    mirrored = chinese["parts"][: len(english["parts"])]
    assert [p["chapters"] for p in mirrored] == [p["chapters"] for p in english["parts"]], "same chapters, same parts"
    assert chinese["parts"][len(english["parts"]) :] == extra, "after them only the Chinese-only parts"
    for part in chinese["parts"]:
        assert re.search(r"[\u4e00-\u9fff]", part["caption"]), f"caption {part['caption']!r} is not Chinese"
    for page in toc_pages(ZH / "_toc.yml"):
        assert (ZH / f"{page}.ipynb").is_file() or (ZH / f"{page}.md").is_file(), page


def test_the_chinese_edition_is_in_step_with_the_english(capsys):
    assert translations.main(["--check"]) == 0, capsys.readouterr().out


# --- on a copy of the book ---------------------------------------------------------------------


@pytest.fixture
def book(tmp_path):
    """The book's sources (TOC, chapters, prose, zh/) in a temporary folder, outside git."""
    for name in ("_toc.yml",):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(ROOT / "zh", tmp_path / "zh")
    (tmp_path / "book").mkdir()
    for page in (ROOT / "book").glob("*.md"):  # the prose pages (intro, playground)
        shutil.copy(page, tmp_path / "book" / page.name)
    return tmp_path


def _run(book, capsys, *args):
    code = translations.main([*args, "--root", str(book)])
    return code, capsys.readouterr().out


def _edit_cell(path, cell_id, change):
    nb = _nb(path)
    cell = next(c for c in nb["cells"] if c["id"] == cell_id)
    cell["source"] = change(translations.text_of(cell)).splitlines(keepends=True)
    path.write_text(translations.dump(nb), encoding="utf-8")
    return nb


def _zh_cell(book, page, cell_id):
    return next(c for c in _nb(book / "zh" / f"{page}.ipynb")["cells"] if c["id"] == cell_id)


def test_an_edited_english_cell_fails_the_check_naming_the_chapter_and_cell(book, capsys):
    assert _run(book, capsys, "--check")[0] == 0
    english = book / f"{CHAPTER_0}.ipynb"
    _edit_cell(english, "b156e591", lambda s: s.replace("plays two parts", "plays two roles"))
    code, out = _run(book, capsys, "--check")
    assert code == 1
    assert f"{CHAPTER_0}: cell b156e591 [changed]" in out, out

    # `make translate` marks the cell: the new English under the marker, the old Chinese kept aside
    assert _run(book, capsys)[0] == 0
    cell = translations.text_of(_zh_cell(book, CHAPTER_0, "b156e591"))
    assert translations.STALE_MARK in cell and "plays two roles" in cell
    assert "上一版译文" in cell and "每个词元" in cell.split(translations.NOTE_OPEN)[1]
    code, out = _run(book, capsys, "--check")
    assert code == 1 and f"{CHAPTER_0}: cell b156e591 [untranslated]" in out, out
    assert "make translate-status" in out
    assert "b156e591" in _run(book, capsys, "--status")[1]

    # a chapter listed as untranslated may keep stale cells
    settings = book / "zh" / "translations.yml"
    config = yaml.safe_load(settings.read_text(encoding="utf-8"))
    config["untranslated"].append(CHAPTER_0)
    settings.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert _run(book, capsys, "--check")[0] == 0

    # the translator writes the Chinese and deletes the marker and note; `make translate` records it
    config["untranslated"].remove(CHAPTER_0)
    settings.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    _edit_cell(book / "zh" / f"{CHAPTER_0}.ipynb", "b156e591", lambda s: "序列里的每个词元都扮演两种角色。")
    assert _run(book, capsys)[0] == 0
    assert _run(book, capsys, "--check")[0] == 0
    assert translations.text_of(_zh_cell(book, CHAPTER_0, "b156e591")) == "序列里的每个词元都扮演两种角色。"


def test_the_translator_sees_the_english_diff_from_git_and_the_old_chinese(book, capsys):
    """In a git checkout the marked cell's note holds what changed in the English since it was translated."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=book, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "book")
    english = book / f"{CHAPTER_0}.ipynb"
    _edit_cell(english, "b156e591", lambda s: s.replace("plays two parts", "plays two roles"))
    assert _run(book, capsys)[0] == 0
    cell = translations.text_of(_zh_cell(book, CHAPTER_0, "b156e591"))
    note = cell.split(translations.NOTE_OPEN)[1]
    assert "-Every token of a sequence plays two parts." in note
    assert "+Every token of a sequence plays two roles." in note
    assert "上一版译文" in note and "序列里的每个词元" in note
    status = _run(book, capsys, "--status", "--diff")[1]
    assert "cell b156e591 [untranslated]" in status and "+Every token of a sequence plays two roles." in status


def test_an_edited_english_code_cell_is_copied_over(book, capsys):
    english = book / f"{CHAPTER_0}.ipynb"
    _edit_cell(english, "91e69a19", lambda s: s.replace("manual_seed(0)", "manual_seed(1)"))
    code, out = _run(book, capsys, "--check")
    assert code == 1 and f"{CHAPTER_0}: cell 91e69a19 [code]" in out, out
    assert _run(book, capsys)[0] == 0
    assert _code_cells(_nb(book / "zh" / f"{CHAPTER_0}.ipynb")) == _code_cells(_nb(english))
    assert _run(book, capsys, "--check")[0] == 0  # code needs no translator


def test_a_new_english_cell_needs_a_translation(book, capsys):
    english = book / f"{CHAPTER_0}.ipynb"
    nb = _nb(english)
    nb["cells"].insert(1, {"cell_type": "markdown", "id": "0a1b2c3d", "metadata": {}, "source": ["A new paragraph."]})
    english.write_text(translations.dump(nb), encoding="utf-8")
    code, out = _run(book, capsys, "--check")
    assert code == 1 and f"{CHAPTER_0}: cell 0a1b2c3d [new]" in out, out


def test_a_translation_follows_its_english_text_into_another_chapter(book, capsys):
    """A chapter split in two moves cells; their translations move with them, by the English hash."""
    source = _nb(book / f"{CHAPTER_0}.ipynb")
    moved = next(c for c in source["cells"] if c["id"] == "366809b9")
    copy_of = dict(moved, id="feedbeef")
    target = book / "notebooks" / "01_llama_attention.ipynb"
    nb = _nb(target)
    nb["cells"].append(copy_of)
    target.write_text(translations.dump(nb), encoding="utf-8")
    assert _run(book, capsys)[0] == 0
    chinese = translations.text_of(_zh_cell(book, "notebooks/01_llama_attention", "feedbeef"))
    assert chinese == translations.text_of(_zh_cell(book, CHAPTER_0, "366809b9"))
    assert "按行来读" in chinese


def test_removing_the_marker_without_translating_is_caught(book, capsys):
    page, cell_id = CHAPTER_0, "b156e591"
    _edit_cell(book / f"{page}.ipynb", cell_id, lambda s: s.replace("plays two parts", "plays two roles"))
    assert _run(book, capsys)[0] == 0  # marks the cell 待翻译, with the new English
    zh = book / "zh" / f"{page}.ipynb"
    _edit_cell(zh, cell_id, lambda s: translations.clean(s.replace(translations.STALE_MARK, "")))
    assert _run(book, capsys)[0] == 0
    code, out = _run(book, capsys, "--check")
    assert code == 1 and f"{page}: cell {cell_id} [no-chinese]" in out, out


def test_a_listed_chapter_with_nothing_left_to_translate_must_leave_the_list(book, capsys):
    settings = book / "zh" / "translations.yml"
    config = yaml.safe_load(settings.read_text(encoding="utf-8"))
    config["untranslated"].append(CHAPTER_0)
    settings.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    code, out = _run(book, capsys, "--check")
    assert code == 1 and f"{CHAPTER_0}: fully translated" in out, out


def test_an_edited_english_prose_page_marks_its_translation_out_of_date(book, capsys):
    intro = book / "book" / "intro.md"
    intro.write_text(
        intro.read_text(encoding="utf-8").replace("Each chapter is a notebook", "Every chapter is a notebook"), "utf-8"
    )
    code, out = _run(book, capsys, "--check")
    assert code == 1 and "book/intro: page [changed]" in out, out
    assert _run(book, capsys)[0] == 0
    chinese = (book / "zh" / "book" / "intro.md").read_text(encoding="utf-8")
    assert translations.OUTDATED_MARK in chinese and "每一章都是一个 notebook" in chinese  # still the Chinese
    assert _run(book, capsys, "--check")[0] == 1
    # the translator updates the page and deletes the marker: in step again
    (book / "zh" / "book" / "intro.md").write_text(translations.unmarked_page(chinese), encoding="utf-8")
    assert _run(book, capsys)[0] == 0
    assert _run(book, capsys, "--check")[0] == 0


# --- the glossary ------------------------------------------------------------------------------


def _avoided_terms():
    """The variants the glossary says not to use ("不用：A、B" in its last column)."""
    text = (ZH / "book" / "glossary.md").read_text(encoding="utf-8")
    return [term.strip() for found in re.findall(r"不用：([^|]+)", text) for term in found.split("、") if term.strip()]


def _translated_text():
    """Every translated (not 待翻译) prose cell and page of the Chinese edition, code spans removed."""
    for path in sorted((ZH / "notebooks").glob("*.ipynb")):
        for cell in _nb(path)["cells"]:
            text = translations.text_of(cell)
            if cell["cell_type"] == "markdown" and not translations.is_stale(text):
                yield f"{path.name} cell {cell['id']}", text
    for path in sorted((ZH / "book").glob("*.md")):
        if path.name != "glossary.md":
            yield path.name, path.read_text(encoding="utf-8")


def test_the_translations_use_the_glossary_terms():
    avoided = _avoided_terms()
    assert "因果遮罩" in avoided and "遮罩" in avoided, avoided
    found = []
    for where, text in _translated_text():
        prose = re.sub(r"`[^`]*`", "", text).replace(" ", "")
        found += [f"{where}: {term}" for term in avoided if term.replace(" ", "") in prose]
    assert not found, "variants the glossary (zh/book/glossary.md) says not to use:\n" + "\n".join(found)


# --- the Chinese build's configuration and the README ------------------------------------------


def test_the_chinese_configuration_is_generated_from_the_english_one(tmp_path):
    import build_book  # scripts/build_book.py

    english = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    chinese = build_book.zh_config(ROOT, tmp_path)
    assert chinese["repository"] == {**english["repository"], "path_to_book": "zh"}  # launch buttons open zh/
    assert chinese["launch_buttons"] == english["launch_buttons"]
    assert chinese["exclude_patterns"] == english["exclude_patterns"]
    assert chinese["execute"] == {**english["execute"], "cache": str((tmp_path / ".jupyter_cache").resolve())}
    assert {name: Path(path) for name, path in chinese["sphinx"]["local_extensions"].items()} == {
        name: ROOT / path for name, path in english["sphinx"]["local_extensions"].items()
    }
    config = chinese["sphinx"]["config"]
    assert config["language"] == "zh_CN"
    assert config["attnviz_other_edition"]["path"] == "../"  # the language switch leads out of zh/
    assert english["sphinx"]["config"]["attnviz_other_edition"]["path"] == "zh/"
    assert {k: v for k, v in config.items() if not k.startswith(("attnviz_", "html_search"))} == {
        **{k: v for k, v in english["sphinx"]["config"].items() if not k.startswith("attnviz_")},
        "language": "zh_CN",
    }
    assert re.search(r"[\u4e00-\u9fff]", chinese["title"])
    assert "因果掩码" in build_book.glossary_terms(ROOT)


def test_the_readme_opens_with_a_chinese_line_pointing_to_the_chinese_edition():
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    owner, name = url.rstrip("/").split("/")[-2:]
    first = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[0]
    assert re.search(r"[\u4e00-\u9fff]", first) and f"https://{owner}.github.io/{name}/zh/" in first


# --- applying finished translations (scripts/apply_translations.py) -----------------------------


def test_applied_translations_are_recorded_and_the_page_leaves_the_untranslated_list(book, capsys, tmp_path_factory):
    import apply_translations

    page, prose = "notebooks/01_llama_attention", "book/playground"
    settings = book / "zh" / "translations.yml"
    config = yaml.safe_load(settings.read_text(encoding="utf-8"))
    for name in (page, prose):
        if name not in config["untranslated"]:
            config["untranslated"].append(name)
    settings.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    english = _nb(book / f"{page}.ipynb")
    # a stand-in for Chinese: the English with a Chinese word in front keeps every code span and link
    cells = {c["id"]: "译文：" + translations.text_of(c) for c in english["cells"] if c["cell_type"] != "code"}
    given = tmp_path_factory.mktemp("zh")
    (given / "01_llama_attention.json").write_text(
        json.dumps({"notebook": "01_llama_attention.ipynb", "cells": cells}, ensure_ascii=False), encoding="utf-8"
    )
    _, body = translations.front_matter((book / f"{prose}.md").read_text(encoding="utf-8"))
    (given / "playground.md").write_text(body.replace("# Playground", "# 试验场 Playground", 1), encoding="utf-8")

    files = [str(given / "01_llama_attention.json"), str(given / "playground.md"), "--root", str(book)]
    assert apply_translations.main(files) == 0, capsys.readouterr().out
    listed = yaml.safe_load(settings.read_text(encoding="utf-8"))["untranslated"] or []
    assert page not in listed and prose not in listed, listed
    first = next(c for c in english["cells"] if c["cell_type"] != "code")
    cell = _zh_cell(book, page, first["id"])
    assert translations.text_of(cell) == cells[first["id"]].strip("\n")
    assert cell["metadata"]["translation"] == {
        "en_id": first["id"],
        "en_sha": translations.sha(translations.text_of(first)),
    }
    chinese = (book / "zh" / f"{prose}.md").read_text(encoding="utf-8")
    assert "# 试验场 Playground" in chinese and translations.STALE_MARK not in chinese
    assert _run(book, capsys, "--check")[0] == 0

    # a cell id the English chapter does not have is an error
    (given / "bad.json").write_text(json.dumps({"notebook": "01_llama_attention.ipynb", "cells": {"nope": "中文"}}))
    assert apply_translations.main([str(given / "bad.json"), "--root", str(book)]) == 1
    assert "cell nope: ERROR" in capsys.readouterr().out
