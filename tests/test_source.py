import pytest
from transformers.models.llama.modeling_llama import LlamaAttention, repeat_kv

import attnviz


def test_quote_names_file_lines_and_version():
    q = attnviz.quote(LlamaAttention.forward, start="input_shape =", stop="cos, sin")
    # forward is wrapped by deprecate_kwarg; the quote must point at modeling_llama, not the decorator
    assert q.path == "src/transformers/models/llama/modeling_llama.py"
    assert q.version == attnviz.versions(warn=False)["transformers"]
    assert q.code.splitlines()[0] == "input_shape = hidden_states.shape[:-1]"
    assert q.code.splitlines()[-1] == "cos, sin = position_embeddings"
    assert q.last_line - q.first_line == len(q.code.splitlines()) - 1
    assert "view(hidden_shape)" in q
    md = q._repr_markdown_()
    assert "```python" in md and q.path in md and f"lines {q.first_line}-{q.last_line}" in md


def test_quote_lines_match_the_file():
    import inspect

    q = attnviz.quote(repeat_kv)
    source_file = inspect.getsourcefile(repeat_kv)
    with open(source_file, encoding="utf-8") as handle:
        file_lines = handle.read().splitlines()
    assert file_lines[q.first_line - 1].startswith("def repeat_kv")
    assert file_lines[q.last_line - 1].strip() == q.code.splitlines()[-1].strip()


def test_missing_text_means_the_library_changed():
    with pytest.raises(ValueError, match="the library changed"):
        attnviz.quote(repeat_kv, start="this line is not there")
