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


def test_snapshots_of_older_releases_read_back_as_quotes():
    from attnviz.source import Quote, snapshot

    old = snapshot("4.57.6")
    assert isinstance(old["LlamaAttention"], Quote) and old["LlamaAttention"].version == "4.57.6"
    assert old["LlamaAttention"].path == "src/transformers/models/llama/modeling_llama.py"
    assert "cache_position" in old["LlamaAttention"]
    # an object a release does not have is None, not missing
    assert snapshot("4.53.0")["find_packed_sequence_indices"] is None
    with pytest.raises(FileNotFoundError, match="scripts/source_snapshot.py"):
        snapshot("0.0.1")


def test_diff_takes_a_stored_quote_and_between_keeps_line_numbers():
    from attnviz.source import snapshot

    old = snapshot("4.57.6")["LlamaAttention"]
    moved = attnviz.diff(old, LlamaAttention)
    assert moved.old is old and "4.57.6" in moved.text.splitlines()[0]
    assert any("cache: Cache | None = None" in line for line in moved.added)
    part = old.between("if past_key_values is not None:", "past_key_values.update(")
    assert part.code.splitlines()[0] == "if past_key_values is not None:"
    assert part.last_line - part.first_line == len(part.code.splitlines()) - 1
    assert part.first_line > old.first_line
    with pytest.raises(ValueError, match="the library changed"):
        old.between("not in the quote")
