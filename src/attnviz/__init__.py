"""attnviz: how Hugging Face transformers implements Llama attention, checked by running it.

The chapters of the attnviz book import these helpers; each helper's docstring names the
chapter that explains it. Submodules load on first use, so ``import attnviz`` is quick and
the command line answers a mistyped flag at once.
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

if importlib.util.find_spec("torch") is None:  # pragma: no cover - exercised only on a machine without torch
    raise ImportError(
        "attnviz needs PyTorch, which it does not install for you (an unpinned torch pulls a "
        "multi-GB CUDA build). Install the CPU build first: `pip install torch==2.13.0`, or "
        "`pip install -r requirements.txt` from the attnviz repository."
    )

__version__ = "0.1.0"

# public name -> the submodule that defines it. The TYPE_CHECKING block below mirrors this table
# for IDEs and type checkers; tests/test_package.py checks that the two agree.
_EXPORTS = {
    "PINNED_VERSIONS": "_versions",
    "versions": "_versions",
    "FAMILIES": "families",
    "SUPPORTED_BACKBONES": "families",
    "find_backbone": "families",
    "sliding_windows": "families",
    "tiny_config": "models",
    "tiny_model": "models",
    "VARIANTS": "patch",
    "LlamaBidirectionalModel": "patch",
    "NoRoPE": "patch",
    "PositionWarning": "patch",
    "bidirectional": "patch",
    "no_rope": "patch",
    "patched": "patch",
    "restore": "patch",
    "active_patches": "patch",
    "ProbeReport": "probes",
    "attends_to_future": "probes",
    "offset_score": "probes",
    "probe_report": "probes",
    "uses_positions": "probes",
    "capture_attention": "capture",
    "AttentionMap": "longmap",
    "AttentionByDistance": "longmap",
    "attention_map": "longmap",
    "AttentionExplorer": "explorer",
    "static_view": "view",
    "live_view": "view",
    "static_data": "view",
    "write_live_model": "weblive",
    "DEMO_DIR": "demo",
    "demo_example": "demo",
    "load_demo": "demo",
    "quote": "source",
    "diff": "source",
    "repo_file": "_paths",
    "assert_bidirectional": "testing",
    "assert_causal": "testing",
    "assert_position_free": "testing",
    "assert_uses_positions": "testing",
}
# submodules a reader uses by name: attnviz.plot.heatmap(...), attnviz.state.seed_backbone(...),
# attnviz.weblive.weights_script() (the demo model as the page loads it)
_SUBMODULES = ("diagrams", "families", "plot", "recipes", "reference", "source", "state", "testing", "weblive")

if TYPE_CHECKING:
    from attnviz import diagrams, families, plot, recipes, reference, source, state, testing, weblive
    from attnviz._paths import repo_file
    from attnviz._versions import PINNED_VERSIONS, versions
    from attnviz.capture import capture_attention
    from attnviz.demo import DEMO_DIR, demo_example, load_demo
    from attnviz.explorer import AttentionExplorer
    from attnviz.families import FAMILIES, SUPPORTED_BACKBONES, find_backbone, sliding_windows
    from attnviz.longmap import AttentionByDistance, AttentionMap, attention_map
    from attnviz.models import tiny_config, tiny_model
    from attnviz.patch import (
        VARIANTS,
        LlamaBidirectionalModel,
        NoRoPE,
        PositionWarning,
        active_patches,
        bidirectional,
        no_rope,
        patched,
        restore,
    )
    from attnviz.probes import ProbeReport, attends_to_future, offset_score, probe_report, uses_positions
    from attnviz.source import diff, quote
    from attnviz.testing import assert_bidirectional, assert_causal, assert_position_free, assert_uses_positions
    from attnviz.view import live_view, static_data, static_view
    from attnviz.weblive import write_live_model

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
