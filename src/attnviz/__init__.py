"""attnviz: how Hugging Face transformers implements Llama attention, checked by running it.

The chapters of the attnviz book import these helpers; each helper's docstring names the
chapter that explains it.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only on a machine without torch
    raise ImportError(
        "attnviz needs PyTorch, which it does not install for you (an unpinned torch pulls a "
        "multi-GB CUDA build). Install the CPU build first: `pip install torch==2.13.0`, or "
        "`pip install -r requirements.txt` from the attnviz repository."
    ) from error

from attnviz._versions import PINNED_VERSIONS, versions
from attnviz.models import tiny_llama, tiny_llama_config
from attnviz.source import quote

__version__ = "0.1.0"

__all__ = [
    "PINNED_VERSIONS",
    "quote",
    "tiny_llama",
    "tiny_llama_config",
    "versions",
]
