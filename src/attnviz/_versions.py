"""The library versions the book's claims were checked against, and the ones running now."""

import platform
import warnings
from importlib import metadata

# The single source of the pins inside the package; tests check requirements.txt agrees.
PINNED_VERSIONS = {"torch": "2.13.0", "transformers": "5.24.0"}


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(warn: bool = True) -> dict[str, str]:
    """Return the versions of Python, torch, transformers and attnviz in this environment.

    Every chapter prints this in its setup cell, and the intro page prints it, so the site
    always says which versions produced it. With ``warn=True`` a ``UserWarning`` says when
    torch or transformers differ from the pinned versions, since several chapters assert
    behaviour that changes between transformers releases.
    """
    found = {
        "python": platform.python_version(),
        "torch": _installed("torch"),
        "transformers": _installed("transformers"),
        "attnviz": _installed("attnviz"),
    }
    if warn:
        for name, pinned in PINNED_VERSIONS.items():
            # "2.13.0+cpu" is the pinned 2.13.0: the local label only names the build.
            if found[name].split("+")[0] != pinned:
                warnings.warn(
                    f"{name} {found[name]} is installed, but this book was checked against {name} "
                    f"{pinned}; some cells may fail. Install the pins with "
                    f"`pip install -r requirements.txt`.",
                    stacklevel=2,
                )
    return found
