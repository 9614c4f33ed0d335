"""Put finished Chinese translations into zh/: a chapter's cells from a JSON file, a prose page from markdown.

A translator (or a batch of them) writes, per chapter, a JSON file

    {"notebook": "04_rope.ipynb", "cells": {"<English markdown cell id>": "<Chinese markdown>", ...}}

and, per prose page, the Chinese page as markdown (``playground.md`` for book/playground.md; its
front matter, if any, is replaced by the English page's). This script:

- puts each Chinese text into the zh notebook's cell with that id (the zh cells keep the English
  ids), without the 待翻译 marker or the translator's note, and records the hash of the English
  cell it translates, as scripts/translations.py does for a translated cell;
- for a prose page, writes zh/book/<name>.md with the English front matter, the translation record
  and the English code cells (so the two editions share their executions);
- runs scripts/translations.py's update (what `make translate` does), then drops each page that no
  longer has anything to translate from `untranslated:` in zh/translations.yml.

It warns, per cell, when the Chinese lost something the English has (a backtick span, a maths
span, a {doc} role, a URL, a code fence, a heading), has no Chinese in it, or uses a term the
glossary says not to use; with --strict such a cell is not applied and the exit status is 1.
A cell id the English chapter does not have is an error.

    python scripts/apply_translations.py /tmp/zh/*.json /tmp/zh/playground.md
    python scripts/apply_translations.py --dry-run /tmp/zh/04_rope.json   # check only
    python scripts/translations.py --check                                 # then, as make test does
"""

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import translations  # noqa: E402  scripts/translations.py, next to this script

SPANS = {
    "code span": re.compile(r"(?<!`)`[^`]+`(?!`)"),
    "maths": re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.DOTALL),
    "{doc} role": re.compile(r"\{doc\}`[^`]*`"),
    "URL": re.compile(r"https?://[^\s)>\]]+"),
    "code fence": re.compile(r"^\s*```+.*$", re.MULTILINE),
    "label": re.compile(r"^\([\w-]+\)=\s*$", re.MULTILINE),
}
FENCED = re.compile(r"^\s*```.*?^\s*```[ \t]*$", re.MULTILINE | re.DOTALL)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")  # {doc}`...`, {ref}`...`: checked as roles, not as code
HEADING = re.compile(r"^(#{1,6}) ", re.MULTILINE)


def doc_target(role: str) -> str:
    inner = role[len("{doc}`") : -1]
    match = re.search(r"<([^>]+)>$", inner)
    return match.group(1) if match else inner


def avoided_terms(root: Path) -> list[str]:
    """The variants the glossary says not to use ("不用：A、B" in its last column)."""
    path = root / "zh" / "book" / "glossary.md"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    return [t.strip() for found in re.findall(r"不用：([^|]+)", text) for t in found.split("、") if t.strip()]


def lost(english: str, chinese: str, avoided: list[str]) -> list[str]:
    """What the Chinese lost or got wrong against the English, one phrase each (empty: fine)."""
    out = []
    for name, pattern in SPANS.items():
        if name == "code span":  # inline code only: not the backticks of a fence
            bare_en, bare_zh = (ROLE.sub("", FENCED.sub("", text)) for text in (english, chinese))
            en, zh = pattern.findall(bare_en), pattern.findall(bare_zh)
            en, zh = [" ".join(s.split()) for s in en], [" ".join(s.split()) for s in zh]
        else:
            en, zh = pattern.findall(english), pattern.findall(chinese)
        if name == "{doc} role":  # an explicit title may be translated; the target must stay
            en, zh = [doc_target(r) for r in en], [doc_target(r) for r in zh]
        if name in ("code fence",):
            en, zh = [s.strip().split()[0] if s.strip() else s for s in en], [s.strip().split()[0] for s in zh]
        if name == "maths":  # the same formulas; spacing inside may differ
            en, zh = [re.sub(r"\s+", "", s) for s in en], [re.sub(r"\s+", "", s) for s in zh]
        missing = Counter(en) - Counter(zh)
        if missing:
            shown = ", ".join(sorted(missing))
            out.append(f"{name} missing: {shown[:200]}")
    if [len(h) for h in HEADING.findall(english)] != [len(h) for h in HEADING.findall(chinese)]:
        out.append("headings differ in number or level")
    if translations.needs_chinese(english) and not translations.CJK.search(chinese):
        out.append("no Chinese in it")
    prose = re.sub(r"`[^`]*`", "", chinese).replace(" ", "")
    out += [f"uses {term!r}, which the glossary says not to use" for term in avoided if term.replace(" ", "") in prose]
    return out


def chinese_text(text: str) -> str:
    """The translator's text, less any marker line or note it kept, without trailing blank lines."""
    text = translations.NOTE.sub("\n", text)
    text = "".join(line for line in translations.lines(text) if translations.MARK_CLASS not in line)
    return text.strip("\n")


def is_marked(cell: dict) -> bool:
    return translations.is_stale(translations.text_of(cell))


def apply_notebook(root: Path, data: dict, source: Path, strict: bool, avoided: list[str], report: list[str]):
    """Put one chapter's translations into zh/notebooks; return (page, applied, problems)."""
    name = data.get("notebook") or f"{source.stem}.ipynb"
    name = name if name.endswith(".ipynb") else f"{name}.ipynb"
    page = f"notebooks/{Path(name).stem}"
    english_path, zh_path = root / f"{page}.ipynb", root / "zh" / f"{page}.ipynb"
    if not english_path.is_file():
        report.append(f"{source}: ERROR: the book has no chapter {page}")
        return page, 0, 1
    if not zh_path.is_file():
        report.append(f"{source}: ERROR: zh/{page}.ipynb does not exist (run scripts/translations.py first)")
        return page, 0, 1
    english = {c["id"]: c for c in json.loads(english_path.read_text(encoding="utf-8"))["cells"]}
    zh = json.loads(zh_path.read_text(encoding="utf-8"))
    zh_cells = {c["id"]: c for c in zh["cells"]}
    applied = errors = 0
    for cell_id, text in (data.get("cells") or {}).items():
        en_cell = english.get(cell_id)
        if en_cell is None or en_cell["cell_type"] == "code" or cell_id not in zh_cells:
            report.append(f"{page}: cell {cell_id}: ERROR: not a markdown cell of the English chapter")
            errors += 1
            continue
        en_text, chinese = translations.text_of(en_cell), chinese_text(text)
        problems = lost(en_text, chinese, avoided)
        for problem in problems:
            report.append(f"{page}: cell {cell_id}: {'NOT APPLIED: ' if strict else ''}{problem}")
        if problems and strict:
            errors += 1
            continue
        cell = zh_cells[cell_id]
        cell["source"] = translations.lines(chinese)
        cell.setdefault("metadata", {})["translation"] = {"en_id": cell_id, "en_sha": translations.sha(en_text)}
        applied += 1
    given = data.get("cells") or {}
    left = [i for i, c in zh_cells.items() if c["cell_type"] != "code" and i not in given and is_marked(c)]
    if left:
        report.append(f"{page}: {len(left)} cell(s) still marked 待翻译, not in {source.name}: {', '.join(left[:8])}")
    zh_path.write_text(translations.dump(zh), encoding="utf-8")
    return page, applied, errors


def apply_page(root: Path, source: Path, strict: bool, avoided: list[str], report: list[str]):
    """Write zh/book/<stem>.md from a Chinese markdown page; return (page, applied, problems)."""
    page = f"book/{source.stem}"
    english_path = root / f"{page}.md"
    if not english_path.is_file():
        report.append(f"{source}: ERROR: the book has no page {page}.md")
        return page, 0, 1
    english = english_path.read_text(encoding="utf-8")
    en_meta, en_body = translations.front_matter(english)
    _, body = translations.front_matter(source.read_text(encoding="utf-8"))
    body = "\n" + chinese_text(body) + "\n"
    problems = lost(translations.CODE_CELL.sub("", en_body), translations.CODE_CELL.sub("", body), avoided)
    en_code, zh_code = translations.CODE_CELL.findall(en_body), translations.CODE_CELL.findall(body)
    if len(en_code) != len(zh_code):
        problems.append(f"{len(zh_code)} code cells, the English has {len(en_code)}")
    for problem in problems:
        report.append(f"{page}: {'NOT APPLIED: ' if strict else ''}{problem}")
    if problems and strict:
        return page, 0, 1
    meta = {**en_meta, "translation": {"source": f"{page}.md", "en_sha": translations.sha(english)}}
    target = root / "zh" / f"{page}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(translations.with_front_matter(meta, body), encoding="utf-8")
    return page, 1, 0


def drop_from_untranslated(root: Path, pages: list[str]) -> None:
    """Remove ``pages`` from `untranslated:` in zh/translations.yml, keeping its comments."""
    path = root / translations.SETTINGS
    text = path.read_text(encoding="utf-8")
    for page in pages:
        text = re.sub(rf"^[ \t]*-[ \t]*{re.escape(page)}[ \t]*\n", "", text, flags=re.MULTILINE)
    if re.search(r"^untranslated:[ \t]*\n(?![ \t]*-)", text, re.MULTILINE):
        text = re.sub(r"^untranslated:[ \t]*\n", "untranslated: []\n", text, flags=re.MULTILINE)
    path.write_text(text, encoding="utf-8")


def update(root: Path) -> tuple[dict, list]:
    """What `make translate` does; returns the plan's files and findings after writing."""
    files, findings, _ = translations.plan(root)
    translations.write(root, files, translations.changed_files(root, files))
    return translations.plan(root)[:2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="<stem>.json (a chapter) or <name>.md (a prose page)")
    parser.add_argument("--strict", action="store_true", help="skip a cell with a warning, and exit 1")
    parser.add_argument("--dry-run", action="store_true", help="check the files only; change nothing")
    parser.add_argument("--root", type=Path, default=translations.ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    avoided = avoided_terms(root)
    report, touched, errors = [], [], 0
    originals = {}
    for source in args.files:
        if not source.is_file():
            report.append(f"{source}: ERROR: no such file")
            errors += 1
            continue
        if source.suffix == ".json":
            data = json.loads(source.read_text(encoding="utf-8"))
            page = f"notebooks/{Path(data.get('notebook') or source.stem).stem}"
            target = root / "zh" / f"{page}.ipynb"
            originals.setdefault(target, target.read_text(encoding="utf-8") if target.is_file() else None)
            page, applied, bad = apply_notebook(root, data, source, args.strict, avoided, report)
        elif source.suffix == ".md":
            target = root / "zh" / "book" / source.name
            originals.setdefault(target, target.read_text(encoding="utf-8") if target.is_file() else None)
            page, applied, bad = apply_page(root, source, args.strict, avoided, report)
        else:
            report.append(f"{source}: ERROR: neither .json (a chapter) nor .md (a prose page)")
            errors += 1
            continue
        errors += bad
        touched.append(page)
        print(f"{source}: {applied} applied to zh/{page}", flush=True)
    if args.dry_run:
        for target, text in originals.items():
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.write_text(text, encoding="utf-8")
    else:
        _, findings = update(root)
        stale = {f.page for f in findings if f.kind in translations.STALE_KINDS}
        done = [page for page in dict.fromkeys(touched) if page not in stale]
        listed = translations.settings(root).get("untranslated") or []
        drop_from_untranslated(root, [page for page in done if page in listed])
        update(root)
        for page in dict.fromkeys(touched):
            left = [f for f in findings if f.page == page and f.kind in translations.STALE_KINDS]
            state = "fully translated" if not left else f"{len(left)} cell(s) or page still to translate"
            print(f"zh/{page}: {state}")
    for line in report:
        print(f"  {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
