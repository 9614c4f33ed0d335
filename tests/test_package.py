import subprocess
import sys

import attnviz


def test_import_is_light():
    heavy = "('torch', 'transformers', 'matplotlib', 'ipywidgets')"
    code = f"import sys, attnviz; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in attnviz.__all__:
        assert getattr(attnviz, name) is not None
    assert set(attnviz.__all__) <= set(dir(attnviz))


def test_unknown_attribute_is_an_attribute_error():
    try:
        attnviz.does_not_exist  # noqa: B018
    except AttributeError as error:
        assert "does_not_exist" in str(error)
    else:
        raise AssertionError("no AttributeError")


def test_repo_file_finds_committed_data_and_says_none_otherwise():
    assert attnviz.repo_file("book/data/compat.json").is_file()
    assert attnviz.repo_file("no/such/file.json") is None


# -- the public surface and the package's structure ----------------------------------------------
import ast  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

PACKAGE = Path(attnviz.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))

# Lower layers never import higher ones. Within a layer, imports must not form a cycle.
LAYERS = [
    {"_versions", "_paths", "source"},
    {"families", "reference"},
    {"models", "patch", "plot", "diagrams"},
    {"probes", "capture", "longmap", "demo", "state"},
    {"view", "explorer", "weblive", "testing", "recipes"},
    {"cli"},
]


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    names = {}
    for node in ast.walk(block):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.name] = node.module.removeprefix("attnviz").removeprefix(".") or alias.name
    return names


def test_type_checking_block_mirrors_the_lazy_exports():
    seen = _type_checking_imports()
    expected = {**attnviz._EXPORTS, **{name: name for name in attnviz._SUBMODULES}}
    assert seen == expected


def test_every_attnviz_name_a_chapter_uses_is_public():
    public = set(attnviz.__all__)
    for notebook in sorted((PACKAGE.parents[1] / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        used = set(re.findall(r"(?<![\w/])attnviz\.([A-Za-z_]\w*)", code))
        used |= {m for m in re.findall(r"from attnviz\.(\w+) import", code)}
        assert used <= public, f"{notebook.name} uses non-public {sorted(used - public)}"


def _imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name != "attnviz", f"{module}.py imports the package face; import a submodule"
                if alias.name.startswith("attnviz."):
                    found.add(alias.name.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "attnviz":
            if node.module == "attnviz":
                for alias in node.names:
                    assert alias.name in MODULES, f"{module}.py imports {alias.name} from the package face"
                    found.add(alias.name)
            else:
                found.add(node.module.split(".")[1])
                for alias in node.names:
                    assert not alias.name.startswith("_"), f"{module}.py imports private {node.module}.{alias.name}"
    return found - {module}


def test_modules_import_submodules_and_nothing_imports_upward():
    layer_of = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    assert set(layer_of) == set(MODULES), "add new modules to LAYERS"
    graph = {module: _imports_of(module) for module in MODULES}
    for module, imported in graph.items():
        upward = [other for other in imported if layer_of[other] > layer_of[module]]
        assert not upward, f"{module} imports {upward} from a higher layer"
    # no cycles: repeatedly remove modules that import nothing left
    remaining = dict(graph)
    while remaining:
        leaves = [m for m, deps in remaining.items() if not deps & set(remaining)]
        assert leaves, f"import cycle among {sorted(remaining)}"
        for leaf in leaves:
            del remaining[leaf]
