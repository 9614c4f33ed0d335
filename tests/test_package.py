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
