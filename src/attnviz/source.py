"""Quote library source in a chapter, straight from the installed package.

A quote names the file, the line numbers and the library version it was read from, so the
book can never show code that differs from what it executes. Chapter 1 introduces ``quote``;
chapter 11 uses ``diff`` to show what Qwen3 and Mistral change in Llama's attention.

An older release's source cannot be imported next to the pinned one. ``scripts/source_snapshot.py``
quotes it with this same ``quote``, inside a throw-away environment holding that release, and
commits the quotes to ``book/data/source_<version>.json``; ``snapshot(version)`` reads them back.
Chapter 1 diffs the 4.57.6 ``LlamaAttention`` (the code the blog post this book grew from
quotes) against the installed one; chapter 6 quotes 4.57.6's mask code.
"""

import inspect
import json
import sys
import textwrap
from importlib import metadata
from pathlib import Path


class Quote:
    """A few lines of source with where they come from; renders as a code block in notebooks."""

    def __init__(self, code: str, path: str, first_line: int, last_line: int, package: str, version: str):
        self.code = code
        self.path = path
        self.first_line = first_line
        self.last_line = last_line
        self.package = package
        self.version = version

    @property
    def header(self) -> str:
        return f"{self.package} {self.version}, {self.path}, lines {self.first_line}-{self.last_line}"

    def __contains__(self, text: str) -> bool:
        return text in self.code

    def __str__(self) -> str:
        return f"# {self.header}\n{self.code}"

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return f"`{self.header}`\n\n```python\n{self.code}\n```\n"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "path": self.path,
            "first_line": self.first_line,
            "last_line": self.last_line,
            "package": self.package,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, fields: dict) -> "Quote":
        return cls(**fields)

    def between(self, start: str | None = None, stop: str | None = None) -> "Quote":
        """The part of this quote from the first line containing ``start`` to the first line at or
        after it containing ``stop`` (both included), with its own line numbers."""
        lines = self.code.splitlines()
        lo, hi = _span(lines, start, stop, f"the quote of {self.header}")
        code = textwrap.dedent("\n".join(lines[lo : hi + 1]))
        return Quote(code, self.path, self.first_line + lo, self.first_line + hi, self.package, self.version)


def _span(lines: list[str], start: str | None, stop: str | None, what: str) -> tuple[int, int]:
    """Indices of the first line containing ``start`` and of the first at or after it containing ``stop``."""

    def find(text: str, begin: int) -> int:
        for index in range(begin, len(lines)):
            if text in lines[index]:
                return index
        raise ValueError(f"{text!r} is not in {what}: the library changed. Update the chapter that quotes it.")

    lo = find(start, 0) if start is not None else 0
    hi = find(stop, lo) if stop is not None else len(lines) - 1
    return lo, hi


def _package_path(filename: str, top: str) -> str:
    """Return the path as it is in the package's repository, e.g. src/transformers/models/..."""
    root = Path(sys.modules[top].__file__).resolve().parent
    relative = Path(filename).resolve().relative_to(root)
    return f"src/{top}/{relative.as_posix()}"


def quote(obj, start: str | None = None, stop: str | None = None) -> Quote:
    """Quote the source of ``obj`` (a function, method or class), from the installed library.

    Args:
        obj: what to quote, e.g. ``LlamaAttention.forward``.
        start: quote from the first line containing this text (default: the first line).
        stop: quote up to and including the first line at or after ``start`` containing this
            text (default: the last line).

    Raises:
        ValueError: when ``start`` or ``stop`` is not in the source, which means the library
            changed and the chapter quoting it must be updated.
    """
    obj = inspect.unwrap(obj)  # decorators (e.g. deprecate_kwarg) would point at their own file
    lines, first = inspect.getsourcelines(obj)
    name = getattr(obj, "__qualname__", repr(obj))
    top = obj.__module__.split(".")[0]
    try:
        version = metadata.version(top)
    except metadata.PackageNotFoundError:
        version = "(unknown version)"

    lo, hi = _span(lines, start, stop, f"the source of {name} in {top} {version}")
    code = textwrap.dedent("".join(lines[lo : hi + 1])).rstrip("\n")
    path = _package_path(inspect.getsourcefile(obj), top)
    return Quote(code, path, first + lo, first + hi, top, version)


class Diff:
    """A unified diff between the sources of two objects; renders as a ``diff`` code block."""

    def __init__(self, old: Quote, new: Quote, lines: list[str]):
        self.old = old
        self.new = new
        self.lines = lines

    @property
    def added(self) -> list[str]:
        """The lines only ``new`` has, without the leading ``+``."""
        return [line[1:] for line in self.lines if line.startswith("+") and not line.startswith("+++")]

    @property
    def removed(self) -> list[str]:
        """The lines only ``old`` has, without the leading ``-``."""
        return [line[1:] for line in self.lines if line.startswith("-") and not line.startswith("---")]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return f"`{self.old.header}` → `{self.new.header}`\n\n```diff\n{self.text}\n```\n"


def diff(old, new, context: int = 2) -> Diff:
    """Diff the installed source of two objects, e.g. ``LlamaAttention.forward`` and ``Qwen3Attention.forward``.

    Args:
        old, new: functions, methods or classes, quoted whole as by ``quote``; or ``Quote``
            objects, e.g. an older release's from ``snapshot`` (chapter 1).
        context: unchanged lines shown around each change.

    Both sides are the code as read, unedited: lines that differ only by the model's name
    (``Qwen3Config`` for ``LlamaConfig``) count as changes too.
    """
    import difflib

    a = old if isinstance(old, Quote) else quote(old)
    b = new if isinstance(new, Quote) else quote(new)
    lines = difflib.unified_diff(
        a.code.splitlines(),
        b.code.splitlines(),
        fromfile=f"{a.path} ({a.package} {a.version})",
        tofile=f"{b.path} ({b.package} {b.version})",
        n=context,
        lineterm="",
    )
    return Diff(a, b, list(lines))


def snapshot(version: str) -> dict[str, Quote | None]:
    """The quotes ``scripts/source_snapshot.py`` took from transformers ``version``, by name.

    A name maps to None when that release has no such object (e.g. 4.53.0 has no
    ``find_packed_sequence_indices``).

    Raises:
        FileNotFoundError: when no snapshot of that release is committed (or shipped).
    """
    from attnviz._paths import repo_file

    relative = f"book/data/source_{version}.json"
    path = repo_file(relative)
    if path is None:
        raise FileNotFoundError(
            f"no snapshot of transformers {version} ({relative}); make one with "
            f"`python scripts/source_snapshot.py --version {version}`."
        )
    stored = json.loads(path.read_text(encoding="utf-8"))
    return {name: None if fields is None else Quote.from_dict(fields) for name, fields in stored["quotes"].items()}
