"""attnviz: how Hugging Face transformers implements Llama attention, checked by running it.

The chapters of the attnviz book import these helpers; each helper's docstring names the
chapter that explains it. Submodules load on first use, so ``import attnviz`` is quick and
the command line answers a mistyped flag at once.
"""

import importlib
import importlib.util

if importlib.util.find_spec("torch") is None:  # pragma: no cover - exercised only on a machine without torch
    raise ImportError(
        "attnviz needs PyTorch, which it does not install for you (an unpinned torch pulls a "
        "multi-GB CUDA build). Install the CPU build first: `pip install torch==2.13.0`, or "
        "`pip install -r requirements.txt` from the attnviz repository."
    )

__version__ = "0.1.0"

# public name -> the submodule that defines it
_EXPORTS = {
    "PINNED_VERSIONS": "_versions",
    "versions": "_versions",
    "capture_attention": "capture",
    "AttentionExplorer": "explorer",
    "static_view": "explorer",
    "load_demo": "demo",
    "demo_example": "demo",
    "tiny_llama": "models",
    "tiny_llama_config": "models",
    "tiny_config": "models",
    "tiny_model": "models",
    "FAMILIES": "models",
    "LlamaBidirectionalModel": "patch",
    "NoRoPE": "patch",
    "bidirectional": "patch",
    "find_backbone": "patch",
    "no_rope": "patch",
    "sliding_windows": "patch",
    "PositionWarning": "patch",
    "ProbeReport": "probes",
    "attends_to_future": "probes",
    "probe_report": "probes",
    "uses_positions": "probes",
    "quote": "source",
    "diff": "source",
    "repo_file": "_paths",
    "assert_bidirectional": "testing",
    "assert_causal": "testing",
    "assert_position_free": "testing",
    "assert_uses_positions": "testing",
}
_SUBMODULES = ("plot", "reference", "testing")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"attnviz.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"attnviz.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'attnviz' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
