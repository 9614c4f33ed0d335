"""The recipe zoo (attnviz.recipes), its committed matrix book/data/recipes.json and the script that writes it.

`make recipes` builds fourteen environments (minutes each), so it is not run here; these tests check
its data, its parts, and the measuring code on the transformers installed here.
"""

import json
import re

import pytest
import recipe_matrix
from conftest import ROOT
from packaging.version import Version

from attnviz import recipes
from attnviz.recipes import recipe_matrix as draw_matrix

ROWS = json.loads((ROOT / "book" / "data" / "recipes.json").read_text(encoding="utf-8"))
QUOTES = json.loads((ROOT / "book" / "data" / "recipe_quotes.json").read_text(encoding="utf-8"))


def test_rows_have_exactly_the_keys_and_consistent_values():
    for row in ROWS:
        assert tuple(row) == recipes.ROW_KEYS, row
        recipe = recipes.RECIPES[row["recipe"]]
        assert row["backend"] in recipes.BACKENDS
        assert row["batch"] in (1, 2)
        assert row["use_cache"] in ((False, True) if recipe.has_cache else (None,))
        if row["error"]:
            assert (row["attends_to_future"], row["uses_positions"], row["padding_masked"]) == (None, None, None)
        else:
            assert isinstance(row["attends_to_future"], bool) and isinstance(row["uses_positions"], bool)
            assert row["padding_masked"] is None if row["batch"] == 1 else isinstance(row["padding_masked"], bool)


def test_covers_at_least_six_recipes_and_eight_releases_from_4_44_to_5_24():
    names = {row["recipe"] for row in ROWS}
    assert len(names) >= 6 and "seed" in names
    assert names == set(recipes.RECIPES)
    span = {v for v in (row["transformers"] for row in ROWS) if Version("4.44") <= Version(v) <= Version("5.24.0")}
    assert len(span) >= 8


def test_every_row_links_to_its_source():
    for row in ROWS:
        source = row["source"]
        if source.startswith("pypi:"):
            assert re.fullmatch(r"pypi:[A-Za-z0-9._-]+==\d+(\.\d+)+", source), source
            assert recipes.source_url(source).startswith("https://pypi.org/project/")
        else:
            assert source.startswith("attnviz:src/attnviz/") and (ROOT / source.split(":", 1)[1]).is_file()
        if recipes.RECIPES[row["recipe"]].source == "transformers":
            assert source == f"pypi:transformers=={row['transformers']}"


def test_each_recipe_runs_on_its_range_and_the_nearest_release_outside():
    for name, recipe in recipes.RECIPES.items():
        measured = sorted({r["transformers"] for r in ROWS if r["recipe"] == name}, key=Version)
        assert measured == recipe_matrix.plan(recipe, recipe_matrix.RELEASES), name


def test_plan_adds_the_first_release_outside_each_end():
    releases = ["4.40.2", "4.41.0", "4.44.2", "4.45.0", "5.24.0"]
    assert recipe_matrix.plan(recipes.RECIPES["llm2vec"], releases) == ["4.41.0", "4.44.2", "4.45.0"]
    assert recipe_matrix.plan(recipes.RECIPES["llm2vec-0.1.6"], releases) == ["4.40.2", "4.41.0"]
    # a class transformers added has no "outside below": the feature does not exist there
    assert recipe_matrix.plan(recipes.RECIPES["modernbert"], ["4.45.0", "4.52.4", "5.24.0"]) == ["4.52.4", "5.24.0"]


def test_every_row_cell_is_one_of_the_cells_of_its_release():
    for (name, version), count in _counts().items():
        recipe = recipes.RECIPES[name]
        backends = {r["backend"] for r in ROWS if r["transformers"] == version}
        assert count == len(backends) * (4 if recipe.has_cache else 2), (name, version)


def _counts():
    counts = {}
    for row in ROWS:
        counts[row["recipe"], row["transformers"]] = counts.get((row["recipe"], row["transformers"]), 0) + 1
    return counts


def test_package_recipes_have_a_recorded_quote_with_their_version():
    for name, recipe in recipes.RECIPES.items():
        if recipe.packages and recipe.quote:
            package, version = recipe.packages[0].split("==")
            assert QUOTES[name]["header"].startswith(f"{package} {version}, "), QUOTES[name]["header"]


def test_the_control_is_causal_and_native_is_bidirectional_here():
    assert recipes.check_control(["eager", "sdpa"]) == ["eager", "sdpa"]
    rows = recipes.measure(recipes.RECIPES["native"], ["eager"])
    assert [recipes.verdict(r) for r in rows] == ["bidirectional"] * 4
    assert all(r["uses_positions"] for r in rows)  # RoPE is still there


def test_a_failure_in_attnviz_is_never_a_verdict():
    def broken(backend):
        return recipes.probe_cell(None, False, 1)  # misused: fails inside attnviz/recipes.py

    recipe = recipes.Recipe("broken", "", "attnviz:src/attnviz/recipes.py", "", broken)
    with pytest.raises(recipes.HarnessError, match="attnviz's own code failed"):
        recipes.measure(recipe, ["eager"])


def test_an_error_raised_by_the_recipes_own_code_is_recorded():
    from transformers import LlamaModel

    def feeds_ids_outside_the_vocabulary(backend):
        model = LlamaModel(recipes.llama_config(backend)).eval()
        return recipes.Built(lambda ids, mask, use_cache: model(input_ids=ids + 10_000)[0], 128)

    recipe = recipes.Recipe("bad", "", "attnviz:src/attnviz/recipes.py", "", feeds_ids_outside_the_vocabulary)
    rows = recipes.measure(recipe, ["eager"])
    assert len(rows) == 4 and all(r["attends_to_future"] is None for r in rows)
    assert all(r["error"].startswith("IndexError: index out of range") for r in rows), rows[0]["error"]


def test_summary_names_the_cells_that_differ():
    cells = [
        {**recipes._row(recipes.RECIPES["seed"], b, c, n), "attends_to_future": not (b == "sdpa" and n == 1)}
        for b in ("eager", "sdpa")
        for c in (False, True)
        for n in (1, 2)
    ]
    for row in cells:
        row.update(uses_positions=True, padding_masked=None if row["batch"] == 1 else True)
    assert recipes.summarize(cells) == "bidirectional (rest); causal: sdpa, batch 1"
    # the table marks the cell with the verdict of most cells and a note letter, and the note
    # under the table names the cells that differ
    table = recipes.summary_table(cells)
    assert "✓<sup>a</sup></td>" in table
    assert "<li>causal with sdpa, batch 1; bidirectional otherwise</li>" in table
    # a cell whose every configuration agrees has no note
    agreeing = [{**row, "attends_to_future": True} for row in cells]
    assert "<sup>" not in recipes.summary_table(agreeing) and "<li>" not in recipes.summary_table(agreeing)
    table = recipes.summary_table(ROWS)
    assert '<a href="https://pypi.org/project/llm2vec/0.2.3/" title="pypi:llm2vec==0.2.3">llm2vec</a>' in table


def test_summary_table_has_a_column_per_release_and_a_note_per_distinct_disagreement():
    from packaging.version import Version

    table = recipes.summary_table(ROWS, list(recipes.RECIPES))
    releases = sorted({r["transformers"] for r in ROWS}, key=Version)
    assert table.count('<th scope="col"><span>') == len(releases)
    assert table.count('<th scope="row">') == len(recipes.RECIPES)
    notes = table.split('<ol class="attnviz-recipes-notes" type="a">')[1].split("</ol>")[0].count("<li>")
    letters = {part.split("</sup>")[0] for part in table.split("<sup>")[1:]}
    assert notes == len(letters) > 0


def test_the_figure_fits_the_column_with_readable_text():
    fig = draw_matrix(ROWS, recipes=list(recipes.RECIPES))
    assert fig.get_size_inches()[0] * fig.dpi <= 690 + 1
    sizes = [t.get_fontsize() for t in fig.findobj(match=lambda a: hasattr(a, "get_fontsize") and a.get_visible())]
    assert sizes and min(sizes) * fig.dpi / 72 >= 9  # points to pixels at the figure's dpi


def test_make_recipes_runs_the_script_and_stays_out_of_make_test():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrecipes:")[1].split("\n\n")[0]
    assert "scripts/recipe_matrix.py" in recipe
    test_recipe = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "recipe_matrix" not in test_recipe
