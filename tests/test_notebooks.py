"""Every chapter is a test: it must run top to bottom in a fresh kernel."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import sync_notebooks  # scripts/, which conftest puts on sys.path
from conftest import CHAPTERS, ROOT, VENV_BIN
from nbclient import NotebookClient

NOTEBOOKS = CHAPTERS


def test_every_notebook_is_a_chapter_of_the_table_of_contents():
    assert NOTEBOOKS, "no chapters found"
    on_disk = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(NOTEBOOKS) == on_disk, "every notebook in notebooks/ must be listed in _toc.yml, and only those"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell["outputs"], f"cell {index} carries outputs"
            assert cell["execution_count"] is None, f"cell {index} carries an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_first_and_matches_config(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert "".join(first_code["source"]) == sync_notebooks.setup_source()
    assert "remove-cell" in first_code["metadata"]["tags"], "the page shows nothing of the setup cell"
    assert sync_notebooks.repository_url() in sync_notebooks.setup_source()


def test_sync_check_flags_a_stale_notebook(tmp_path):
    """The check `make test` runs passes on the chapters as committed and fails on a stale one."""
    script = ROOT / "scripts" / "sync_notebooks.py"

    def check(*paths):
        return subprocess.run(
            [sys.executable, str(script), "--check", *map(str, paths)], capture_output=True, text=True
        )

    ok = check()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    nb = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    clean = tmp_path / "clean.ipynb"
    clean.write_text(sync_notebooks.dump(nb), encoding="utf-8")
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    with_outputs = tmp_path / "with-outputs.ipynb"
    with_outputs.write_text(sync_notebooks.dump(nb), encoding="utf-8")
    code["outputs"], code["source"] = [], ["# attnviz setup cell: an old copy\n", "import attnviz\n"]
    old_setup = tmp_path / "old-setup.ipynb"
    old_setup.write_text(sync_notebooks.dump(nb), encoding="utf-8")

    assert check(clean).returncode == 0
    for stale in (with_outputs, old_setup):
        result = check(clean, stale)
        assert result.returncode == 1, f"--check passed {stale.name}"
        assert str(stale) in result.stdout and str(clean) not in result.stdout
    assert "hi" in with_outputs.read_text(encoding="utf-8"), "--check must not rewrite the notebook"


@pytest.fixture(scope="session")
def installed_attnviz(tmp_path_factory) -> dict:
    """A kernel environment whose attnviz is a wheel install of this checkout, far from the repository.

    That is what Colab has: the chapter and `pip install attnviz`, no book/ or benchmarks/ next to it.
    The sources are copied first so the build leaves nothing behind in the checkout.
    """
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = base / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "--target", str(target), str(source)],
        check=True,
    )
    shutil.rmtree(source)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import attnviz; print(attnviz.__file__)"], env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    return env


@pytest.mark.book
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_top_to_bottom_in_a_fresh_kernel(path, installed_attnviz, tmp_path):
    """In a folder holding only the chapter, with attnviz installed as a reader installs it."""
    shutil.copy(path, tmp_path / path.name)
    nb = nbformat.read(tmp_path / path.name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=installed_attnviz)  # raises CellExecutionError, naming the cell, on the first failure
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    # chapter 1 introduces the heatmap; every later chapter shows at least two figures
    assert len(images) >= (1 if path.name.startswith("01_") else 2), f"{path.name} draws {len(images)} figures"


def checks_in(source: str) -> int:
    """How many checks a code cell holds: ``assert`` statements and calls of ``assert_*`` functions
    (``torch.testing.assert_close``), IPython's ``%`` and ``!`` lines left out.

    Read with ``ast``, so ``from torch.testing import assert_close``, or the word in a comment or a
    string, is not a check.
    """
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    count = 0
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assert):
            count += 1
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            count += name.startswith("assert_")
    return count


def test_checks_are_statements_and_calls_not_the_word():
    cell = '# assert nothing\nfrom torch.testing import assert_close\nprint("assert")\nf = assert_close\n%time x = 1'
    assert checks_in(cell) == 0
    assert (
        checks_in("if True:\n    assert 1 == 1, 'one'\nassert 2\ntorch.testing.assert_close(a, b)\nassert_close(a, b)")
        == 4
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_claims_are_checked_by_code(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    checking = [c for c in nb["cells"] if c["cell_type"] == "code" and checks_in("".join(c["source"]))]
    least = 2 if path.name.startswith("00_") else 4  # the two-screen on-ramp makes few claims
    assert len(checking) >= least, f"{path.name}: only {len(checking)} cells check a claim"


# Tags under which the page does not show a cell's input (Jupyter Book 1.x / MyST-NB): the cell
# still runs and still fails the build. hide-input and hide-cell fold the input behind a toggle.
HIDDEN_INPUT = {"remove-input", "hide-input", "remove-cell", "hide-cell"}
MOST_VISIBLE_CHECKS = 3


def visible_checks(nb: dict) -> int:
    """How many checks sit in code cells whose input the page shows."""
    return sum(
        checks_in("".join(cell["source"]))
        for cell in nb["cells"]
        if cell["cell_type"] == "code" and not HIDDEN_INPUT & set(cell["metadata"].get("tags", []))
    )


def test_visible_checks_counts_only_shown_cells():
    def code(source, *tags):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source}

    nb = {"cells": [code("x = 1\nassert x == 1"), code("assert x", "remove-input"), code("assert x", "hide-input")]}
    nb["cells"] += [code("assert_close(x, x)", "hide-output"), {"cell_type": "markdown", "source": "assert x"}]
    assert visible_checks(nb) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checks_stay_out_of_the_reading_path(path):
    """A chapter reads like an explanation, not a test suite: its checks run in cells the page does
    not show (tag them remove-input, or hide-input where a reader may want to look)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    shown = visible_checks(nb)
    assert shown <= MOST_VISIBLE_CHECKS, (
        f"{path.name} shows {shown} assert statements; move checks into a following remove-input cell"
    )


def tiny_book(where, check: str):
    """A one-chapter book built with this book's execution settings; its chapter hides `check`."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    nb_settings = {k: v for k, v in config["sphinx"]["config"].items() if k.startswith("nb_")}
    where.mkdir()
    tiny = {"title": "tiny", "only_build_toc_files": True, "execute": config["execute"]}
    tiny["sphinx"] = {"config": nb_settings}
    (where / "_config.yml").write_text(yaml.safe_dump(tiny), encoding="utf-8")
    toc = {"format": "jb-book", "root": "intro", "chapters": [{"file": "chapter"}]}
    (where / "_toc.yml").write_text(yaml.safe_dump(toc), encoding="utf-8")
    (where / "intro.md").write_text("# Intro\n", encoding="utf-8")
    nb = nbformat.v4.new_notebook(metadata=json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))["metadata"])
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("answer = 6 * 7\nprint('answer =', answer)"),
        nbformat.v4.new_code_cell(check, metadata={"tags": ["remove-input"]}),
    ]
    nbformat.write(nb, where / "chapter.ipynb")
    result = subprocess.run(
        [str(VENV_BIN / "jupyter-book"), "build", str(where), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # without the colours
    return result.returncode, log, where / "_build" / "html" / "chapter.html"


@pytest.mark.book
def test_a_failing_hidden_check_fails_the_build(tmp_path):
    """remove-input hides a check from the page, not from the build: the book's own execution
    settings (myst-nb, allow_errors false, -W) still run it, and a false claim stops the build."""
    rc, log, page = tiny_book(tmp_path / "passing", "assert answer == 42, 'hidden check: the answer'")
    assert rc == 0, log[-3000:]
    html = page.read_text(encoding="utf-8")
    assert "answer = 42" in html, "the printed line stays on the page"
    assert "hidden check" not in html, "remove-input left the check's code on the page"

    rc, log, _ = tiny_book(tmp_path / "failing", "assert answer == 41, 'hidden check: the answer'")
    assert rc != 0, "a false hidden check did not fail the build"
    assert "AssertionError: hidden check: the answer" in log, log[-3000:]


def exercises(nb: dict) -> list[tuple[str, str]]:
    """The build-something exercises of a chapter: ``(function, check)`` names, one per run of
    three code cells tagged ``skip-execution`` (the reader's stub, which the book does not run),
    ``hide-input`` (a solution defining the same function) and ``remove-input`` (a hidden check
    that defines ``check_*`` and calls it), in that order."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    found = []
    for stub, solution, check in zip(code, code[1:], code[2:], strict=False):
        tags = [c.get("metadata", {}).get("tags", []) for c in (stub, solution, check)]
        if "skip-execution" not in tags[0]:
            continue
        assert "hide-input" in tags[1] and "remove-input" in tags[2], f"an exercise's cells are tagged {tags}"
        sources = ["".join(c["source"]) for c in (stub, solution, check)]
        defined = [{n.name for n in ast.parse(s).body if isinstance(n, ast.FunctionDef)} for s in sources]
        (function,) = defined[0]  # the stub parses, though nothing runs it, and defines one function
        assert function in defined[1], f"the solution does not define {function}"
        (checker,) = {name for name in defined[2] if name.startswith("check_")}
        assert f"{checker}({function})" in sources[2], f"the hidden cell does not call {checker}({function})"
        found.append((function, checker))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_an_exercise_that_builds_something(path):
    """Each chapter asks the reader to write code: a stub the build skips, a solution, a check."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = exercises(nb)
    assert found, f"{path.name} has no exercise with a skip-execution stub, hide-input solution, remove-input check"
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for _, checker in found:
        assert f"`{checker}(fn)`" in text, f"{path.name}: the task text does not tell the reader about {checker}"
    # the stub is skipped because the executors honour the tag: nbclient here, and jupyter-cache,
    # which runs the book's notebooks through nbclient with its defaults
    assert NotebookClient(nbformat.v4.new_notebook()).skip_cells_with_tag == "skip-execution"


def test_exercises_are_read_from_the_tags():
    def cell(source, *tags):
        return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})

    stub = cell("def f(x):\n    ...  # your code here", "skip-execution")
    solution = cell("def f(x):\n    return x", "hide-input")
    check = cell("def check_f(fn):\n    assert fn(1) == 1\n\n\ncheck_f(f)", "remove-input")
    assert exercises(nbformat.v4.new_notebook(cells=[stub, solution, check])) == [("f", "check_f")]
    assert exercises(nbformat.v4.new_notebook(cells=[solution, check])) == []  # no stub
    with pytest.raises(AssertionError, match="tagged"):
        exercises(nbformat.v4.new_notebook(cells=[stub, solution, cell(check.source)]))  # check shown
    with pytest.raises(AssertionError, match="does not call"):
        exercises(nbformat.v4.new_notebook(cells=[stub, solution, cell("def check_f(fn):\n    pass", "remove-input")]))


PAGE_COLUMNS = 88  # a code block on the page shows about this many characters before it scrolls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_shown_code_fits_the_page(path):
    """Code a reader sees is not clipped: `ruff format` keeps it to 88 columns (notebooks/ruff.toml),
    and what it cannot wrap (long strings, comments) is wrapped by hand."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    long_lines = [
        f"cell {cell.get('id')}: {line.strip()[:60]}..."
        for cell in nb["cells"]
        # hide-input and hide-cell fold the code, but a reader can open it: only removed code is exempt
        if cell["cell_type"] == "code" and not {"remove-input", "remove-cell"} & set(cell["metadata"].get("tags", []))
        for line in "".join(cell["source"]).splitlines()
        if len(line) > PAGE_COLUMNS
    ]
    assert not long_lines, f"{path.name}: lines over {PAGE_COLUMNS} columns: {long_lines}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_that_only_prints_a_table_is_folded(path):
    """A cell that ends by showing a Markdown table shows the table, not the string-building code
    (hide-input: the reader can still open it)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    shown = [
        cell.get("id")
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        and "".join(cell["source"]).strip().splitlines()[-1:] != []
        and "".join(cell["source"]).strip().splitlines()[-1].startswith("Markdown(")
        and not HIDDEN_INPUT & set(cell["metadata"].get("tags", []))
    ]
    assert not shown, f"{path.name}: cells {shown} build a table in view; tag them hide-input"
