"""Drift watch: does a newer transformers release change anything the book says?

For each transformers release to check (by default every release on PyPI newer than the pin in
requirements.txt; when there is none, the newest release, so the check still runs end to end),
this script

1. makes a throw-away virtual environment that shares .venv's torch and tools (a .pth file points
   at .venv's site-packages, after the environment's own) and installs that transformers, and
   attnviz in editable mode, into it; .venv itself is left untouched (checked: .venv's package
   list is compared before and after);
2. runs the transformers-facing tests (DRIFT_TESTS) with pytest;
3. executes every chapter of the book in a fresh kernel of that environment: each chapter's
   assert cells are the book's claims, so a failing cell is a claim that changed;
4. runs the compatibility probes of chapter 6 (the seed's patch, STATE's later patch, attnviz's
   own; eager and sdpa; without and with a KV cache) and compares each verdict, and the mask
   layer 0 receives, with the pinned release's row in book/data/compat.json;
5. re-runs the pinned release's cells of chapter 10's recipe matrix (scripts/recipe_matrix.py:
   every recipe that runs on the pin, every backend, cache and batch cell) and compares them with
   book/data/recipes.json.

Once per run, it also re-measures every older release in book/data/compat.json (each in its
own throw-away environment, as scripts/compat_matrix.py does) and reports any row that no
longer comes out as committed: the table must stay regenerable from this repository.

It writes _build/drift/report.md and report.json and exits 1 when anything differs from the
pinned release, 0 when nothing does.

The Chinese edition (zh/) is covered by code identity, not by a second run: its chapters' code
cells are the English ones byte for byte (scripts/translations.py --check, in `make test`), so
each English chapter's result is the Chinese chapter's result too. The report says so, after
checking the identity again.

    make drift                                   # what the weekly workflow runs
    .venv/bin/python scripts/drift.py --versions 5.23.0 [--keep-envs .drift-envs] [--skip-chapters] [--skip-older]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from booklayout import ROOT, chapters  # scripts/booklayout.py and scripts/envs.py, next to this script
from compat_matrix import measure
from envs import environment
from packaging.version import InvalidVersion, Version
from recipe_matrix import measure_release, recipe_changes

REPORT_DIR = ROOT / "_build" / "drift"
COMPAT = ROOT / "book" / "data" / "compat.json"
RECIPES = ROOT / "book" / "data" / "recipes.json"
# The tests that exercise transformers itself. Left out: the pins (test_versions), the committed
# compat data (checked by step 4 instead), the notebooks (step 3), the site build and browser
# (nothing there depends on transformers beyond the chapters), and the repository's YAML.
DRIFT_TESTS = [
    "tests/test_reference.py",
    "tests/test_patch.py",
    "tests/test_capture.py",
    "tests/test_probes.py",
    "tests/test_families.py",
    "tests/test_models.py",
    "tests/test_source.py",
    "tests/test_demo.py",
    "tests/test_explorer.py",
    "tests/test_cli.py",
    "tests/test_plot.py",
]
VERDICT_KEYS = ("attends_to_future", "uses_positions", "refused", "error", "layer0_mask", "layer0_is_causal")
ROW_KEY = ("patch", "backend", "use_cache")
MAX_LISTED = 25  # failed tests listed in report.md; report.json has every one


def pinned_transformers() -> str:
    """The release the book's claims were checked against (attnviz.PINNED_VERSIONS)."""
    import attnviz

    return attnviz.PINNED_VERSIONS["transformers"]


def releases_on_pypi() -> list[str]:
    """Every final, non-yanked transformers release on PyPI."""
    with urllib.request.urlopen("https://pypi.org/pypi/transformers/json", timeout=60) as response:
        data = json.load(response)
    found = []
    for name, files in data["releases"].items():
        try:
            version = Version(name)
        except InvalidVersion:
            continue
        if files and not version.is_prerelease and not all(f.get("yanked") for f in files):
            found.append(name)
    return found


def versions_to_check(pin: str, available: list[str]) -> tuple[list[str], str]:
    """The releases newer than ``pin``, oldest first; or the newest one when none is newer."""
    newer = sorted((v for v in available if Version(v) > Version(pin)), key=Version)
    if newer:
        return newer, f"{len(newer)} release(s) newer than the pinned {pin}"
    newest = max(available, key=Version)
    return [newest], f"no release newer than the pinned {pin}; checking the newest, {newest}"


def failed_tests(junit_xml: Path) -> tuple[int, list[dict]]:
    """(tests run, failures) from a pytest --junitxml file; a failure is {test, message}."""
    root = ET.parse(junit_xml).getroot()
    failures, run = [], 0
    for case in root.iter("testcase"):
        run += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            test = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            failures.append({"test": test, "message": message[0][:200] if message else ""})
    return run, failures


def compat_changes(pinned_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The (patch, backend, use_cache) rows whose verdicts or layer-0 evidence differ; an error counts
    as a verdict, its text does not."""

    def verdicts(row):
        return {key: bool(row.get(key)) if key == "error" else row.get(key) for key in VERDICT_KEYS}

    def key(row):
        return tuple(row.get(k) for k in ROW_KEY)

    pinned = {key(r): verdicts(r) for r in pinned_rows}
    changes = []
    for row in new_rows:
        before = pinned.get(key(row))
        after = verdicts(row)
        if before != after:
            changes.append(
                {**dict(zip(ROW_KEY, key(row), strict=True)), "pinned": before, "new": after, "error": row.get("error")}
            )
    missing = set(pinned) - {key(r) for r in new_rows}
    for cell in sorted(missing, key=str):
        changes.append({**dict(zip(ROW_KEY, cell, strict=True)), "pinned": pinned[cell], "new": None})
    return changes


def older_rows_changes(committed: list[dict], pin: str, base: Path) -> list[dict]:
    """Re-measure every release of ``committed`` other than ``pin``: the rows that no longer come out
    as committed (compared whole, error text included), or the failure that stopped a release."""
    changes = []
    releases = sorted({r["transformers"] for r in committed if r["transformers"] != pin}, key=Version)
    for version in releases:
        print(f"transformers {version}: re-measuring the committed rows ...", flush=True)
        try:
            found = measure(version, base)
        except SystemExit as failure:  # the harness failed there: the table cannot be regenerated
            changes.append({"transformers": version, "row": "(all)", "committed": None, "now": str(failure)[-500:]})
            continue
        before = {tuple(r[k] for k in ROW_KEY): r for r in committed if r["transformers"] == version}
        now = {tuple(r[k] for k in ROW_KEY): r for r in found}
        for cell in sorted(set(before) | set(now), key=str):
            if before.get(cell) != now.get(cell):
                changes.append(
                    {
                        "transformers": version,
                        "row": " / ".join(map(str, cell)),
                        "committed": before.get(cell),
                        "now": now.get(cell),
                    }
                )
    return changes


def run_chapter(path: Path) -> dict:
    """Execute one chapter in a fresh kernel: {chapter, ok} plus, on failure, the cell, its claim and the error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    result = {"chapter": path.name, "ok": True}
    try:
        client.execute()
    except CellExecutionError as error:
        for index, cell in enumerate(nb.cells):
            failing = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if cell.cell_type == "code" and failing:
                result.update(
                    ok=False,
                    cell=index,
                    claim=_claim_line(cell.source, failing[0].get("traceback", [])),
                    error=f"{failing[0].get('ename')}: {str(failing[0].get('evalue', ''))[:300]}",
                )
                break
        else:
            result.update(ok=False, cell=None, claim="", error=f"{type(error).__name__}: {str(error)[:300]}")
    return result


def _child_chapters(out: Path) -> int:
    """Run in the drift environment: every chapter, in order."""
    results = []
    for path in chapters():
        result = run_chapter(path)
        results.append(result)
        print(f"  {path.name}: {'ok' if result['ok'] else 'FAILED at cell ' + str(result['cell'])}", flush=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


def _claim_line(source: str, traceback: list[str]) -> str:
    """The line of the failing cell that raised: for an assert, the claim itself."""
    import re

    plain = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", frame) for frame in traceback)
    arrows = re.findall(r"^-+> *(\d+)", plain, flags=re.MULTILINE)
    lines = source.splitlines()
    if arrows:
        number = int(arrows[0])
        if 1 <= number <= len(lines):
            return lines[number - 1].strip()
    asserts = [line.strip() for line in lines if line.strip().startswith("assert")]
    return asserts[0] if asserts else (lines[0].strip() if lines else "")


def _venv_fingerprint() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def check_version(version: str, base: Path, skip_chapters: bool) -> dict:
    print(f"transformers {version}: setting up a throw-away environment in {base} ...", flush=True)
    python = environment(version, base)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    installed = subprocess.run(
        [str(python), "-c", "import torch, transformers; print(transformers.__version__, torch.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    if installed[0] != version:
        raise SystemExit(f"the drift environment has transformers {installed[0]}, not {version}")
    # attnviz itself, editable, into the drift environment: its `attnviz` command is what test_cli runs
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", str(ROOT)],
        check=True,
        env=env,
    )
    subprocess.run([str(python), str(ROOT / "scripts" / "install_kernel.py")], check=True, env=env, capture_output=True)
    result = {"transformers": version, "torch": installed[1]}

    with tempfile.TemporaryDirectory(prefix="attnviz-drift-") as scratch:
        junit = Path(scratch) / "junit.xml"
        print(f"transformers {version}: transformers-facing tests ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *DRIFT_TESTS],
            cwd=ROOT,
            env=env,
            check=False,
        )
        run, failures = failed_tests(junit) if junit.exists() else (0, [{"test": "pytest", "message": "did not run"}])
        result["tests"] = {"run": run, "failed": failures}

        if skip_chapters:
            result["chapters"] = None
        else:
            print(f"transformers {version}: chapters ...", flush=True)
            out = Path(scratch) / "chapters.json"
            subprocess.run([str(python), __file__, "--child-chapters", str(out)], cwd=ROOT, env=env, check=False)
            result["chapters"] = (
                json.loads(out.read_text())
                if out.exists()
                else [{"chapter": "(all)", "ok": False, "error": "did not run"}]
            )

    print(f"transformers {version}: compatibility probes ...", flush=True)
    try:
        new_rows = measure(version, base)
    except SystemExit as failure:  # the harness failed in that environment: report it, do not guess
        result["compat"] = [
            {
                "patch": "(all)",
                "backend": "-",
                "use_cache": "-",
                "pinned": None,
                "new": None,
                "error": str(failure)[-500:],
            }
        ]
    else:
        pin = pinned_transformers()
        pinned_rows = [r for r in json.loads(COMPAT.read_text(encoding="utf-8")) if r["transformers"] == pin]
        result["compat"] = compat_changes(pinned_rows, new_rows)
    result["recipes"] = check_recipes(version, python, base)
    result["drift"] = bool(
        result["tests"]["failed"]
        or result["compat"]
        or result["recipes"]
        or any(not c["ok"] for c in result["chapters"] or [])
    )
    return result


def check_recipes(version: str, python: Path, base: Path) -> list[dict]:
    """Re-run the pinned release's cells of book/data/recipes.json (chapter 10) on ``version``: what changed."""
    print(f"transformers {version}: recipe cells ...", flush=True)
    pin = pinned_transformers()
    pinned_rows = [r for r in json.loads(RECIPES.read_text(encoding="utf-8")) if r["transformers"] == pin]
    names = list(dict.fromkeys(r["recipe"] for r in pinned_rows))
    try:
        found = measure_release(version, python, names, base)
    except SystemExit as failure:  # the harness failed in that environment: report it, do not guess
        return [{"cell": ("(all)",), "pinned": None, "new": None, "error": str(failure)}]
    return recipe_changes(pinned_rows, found["rows"])


def chinese_edition() -> dict:
    """Whether every Chinese chapter's code cells are its English chapter's (then the English run covers it)."""
    differ = []
    for path in chapters():
        chinese = ROOT / "zh" / path.relative_to(ROOT)

        def code(nb_path):
            return [c for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]

        if not chinese.is_file() or code(chinese) != code(path):
            differ.append(path.name)
    return {"chapters": len(chapters()), "differ": differ}


def render(
    results: list[dict], pin: str, why: str, older: list[dict] | None = None, chinese: dict | None = None
) -> str:
    lines = [
        "# attnviz drift report",
        "",
        f"Pinned transformers {pin}. {why.capitalize()}. Run {datetime.date.today().isoformat()}.",
        "",
    ]
    if chinese is not None:
        if chinese["differ"]:
            lines.append(
                f"Chinese edition: NOT covered: the code of {', '.join(chinese['differ'])} differs from the English "
                "(run `make translate`)."
            )
        else:
            lines.append(
                f"Chinese edition: covered by code identity: its {chinese['chapters']} chapters' code cells are the "
                "English ones byte for byte, so the English chapters' results below are theirs too."
            )
        lines.append("")
    if older is None:
        lines += ["## Older releases in book/data/compat.json: not re-measured (--skip-older)", ""]
    else:
        verdict = "DRIFT: the committed table no longer regenerates" if older else "every committed row regenerates"
        lines += [f"## Older releases in book/data/compat.json: {verdict}", ""]
        for change in older[:MAX_LISTED]:
            lines.append(
                f"- {change['transformers']} {change['row']}: committed {change['committed']} -> now {change['now']}"
            )
        lines.append("")
    for r in results:
        verdict = "DRIFT: something the book says changed" if r["drift"] else "no drift: every check matches the pin"
        lines += [f"## transformers {r['transformers']} (torch {r['torch']}): {verdict}", ""]
        tests = r["tests"]
        lines.append(f"- Tests: {tests['run']} transformers-facing tests run, {len(tests['failed'])} failed.")
        for failure in tests["failed"][:MAX_LISTED]:
            lines.append(f"  - `{failure['test']}`: {failure['message']}")
        if len(tests["failed"]) > MAX_LISTED:
            lines.append(f"  - ... and {len(tests['failed']) - MAX_LISTED} more (all of them in report.json)")
        if r["chapters"] is None:
            lines.append("- Chapters: skipped (--skip-chapters).")
        else:
            failed = [c for c in r["chapters"] if not c["ok"]]
            lines.append(f"- Chapters: {len(r['chapters'])} run, {len(failed)} with a claim that no longer holds.")
            for c in failed:
                lines.append(
                    f"  - {c['chapter']}, cell {c.get('cell')}: `{c.get('claim', '')}` -> {c.get('error', '')}"
                )
        lines.append(
            f"- Compatibility probes: {len(r['compat'])} verdict(s) differ from {pin}'s rows in book/data/compat.json."
        )
        for change in r["compat"]:
            lines.append(
                f"  - {change['patch']} / {change['backend']} / use_cache={change['use_cache']}: "
                f"{pin} {change['pinned']} -> "
                f"{r['transformers']} {change['new']}" + (f" ({change['error'][:160]})" if change.get("error") else "")
            )
        recipes = r.get("recipes", [])
        lines.append(f"- Recipe cells: {len(recipes)} differ from {pin}'s rows in book/data/recipes.json.")
        for change in recipes[:MAX_LISTED]:
            cell = " / ".join(str(part) for part in change["cell"])
            lines.append(
                f"  - {cell}: {pin} {change['pinned']} -> {r['transformers']} {change['new']}"
                + (f" ({change['error'][:160]})" if change.get("error") else "")
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", help="releases to check (default: every one newer than the pin)")
    parser.add_argument("--keep-envs", type=Path, help="reuse environments in this folder instead of a temporary one")
    parser.add_argument("--skip-chapters", action="store_true", help="leave out the chapters (quicker)")
    parser.add_argument(
        "--skip-older", action="store_true", help="do not re-measure the older releases in book/data/compat.json"
    )
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--child-chapters", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_chapters:
        return _child_chapters(args.child_chapters)

    pin = pinned_transformers()
    if args.versions:
        versions, why = args.versions, f"checking the requested release(s) {', '.join(args.versions)}"
    else:
        versions, why = versions_to_check(pin, releases_on_pypi())
    print(f"attnviz drift: {why}", flush=True)

    before = _venv_fingerprint()
    results = []
    with tempfile.TemporaryDirectory(prefix="attnviz-drift-envs-") as scratch:
        base = args.keep_envs or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        for version in versions:
            results.append(check_version(version, base, args.skip_chapters))
        committed = json.loads(COMPAT.read_text(encoding="utf-8"))
        older = None if args.skip_older else older_rows_changes(committed, pin, base)
    if _venv_fingerprint() != before:
        raise SystemExit("the drift check changed .venv's packages; it must never do that (a bug in scripts/drift.py)")

    args.report_dir.mkdir(parents=True, exist_ok=True)
    report = render(results, pin, why, older, chinese_edition())
    (args.report_dir / "report.md").write_text(report, encoding="utf-8")
    (args.report_dir / "report.json").write_text(
        json.dumps({"pinned": pin, "results": results, "older": older}, indent=1), encoding="utf-8"
    )
    print(report)
    print(f"wrote {args.report_dir / 'report.md'}")
    return 1 if any(r["drift"] for r in results) or older else 0


if __name__ == "__main__":
    sys.exit(main())
