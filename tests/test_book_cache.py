"""The book's execution cache is emptied when the attnviz package changes (scripts/book_cache.py)."""

import book_cache


def test_a_package_change_empties_the_cache_and_nothing_else_does(tmp_path, monkeypatch):
    package = tmp_path / "src" / "attnviz"
    package.mkdir(parents=True)
    (package / "plot.py").write_text("FONT = 10\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    cache = tmp_path / "_build" / ".jupyter_cache"
    monkeypatch.setattr(book_cache, "ROOT", tmp_path)
    monkeypatch.setattr(book_cache, "CACHE", cache)
    monkeypatch.setattr(book_cache, "STAMP", tmp_path / "_build" / "stamp")

    assert book_cache.refresh() == "book cache: none yet"
    cache.mkdir(parents=True)
    (cache / "global.db").write_text("executed chapters")
    assert "unchanged" in book_cache.refresh() and cache.is_dir()

    (package / "plot.py").write_text("FONT = 9\n")  # a change to the package's code
    assert "emptied" in book_cache.refresh() and not cache.exists()
    cache.mkdir()
    assert "unchanged" in book_cache.refresh() and cache.is_dir()

    (tmp_path / "requirements.txt").write_text("torch==2.14.0\n")  # a change to the pins
    assert "emptied" in book_cache.refresh() and not cache.exists()
