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


def test_a_package_change_makes_sphinx_read_every_chapter_again(tmp_path, monkeypatch):
    """An emptied execution cache alone changed nothing: Sphinx re-reads only changed sources, so
    the other chapters kept the outputs of the old package. Its saved environments go too."""
    package = tmp_path / "src" / "attnviz"
    package.mkdir(parents=True)
    (package / "recipes.py").write_text("LEGEND = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    cache = tmp_path / "_build" / ".jupyter_cache"
    environments = [tmp_path / "_build" / ".doctrees", tmp_path / "_build" / "zh" / "_build" / ".doctrees"]
    monkeypatch.setattr(book_cache, "ROOT", tmp_path)
    monkeypatch.setattr(book_cache, "CACHE", cache)
    monkeypatch.setattr(book_cache, "STAMP", tmp_path / "_build" / "stamp")
    monkeypatch.setattr(book_cache, "ENVIRONMENTS", environments)
    book_cache.refresh()
    for folder in [cache, *environments]:
        folder.mkdir(parents=True)
        (folder / "kept").write_text("from the last build")
    assert "unchanged" in book_cache.refresh() and all(folder.is_dir() for folder in [cache, *environments])
    (package / "recipes.py").write_text("LEGEND = 2\n")
    assert "emptied" in book_cache.refresh()
    assert not any(folder.exists() for folder in [cache, *environments])
