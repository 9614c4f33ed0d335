"""The book's small trained model (``scripts/train_demo.py``) and its example input.

A 2-layer, 4-head Llama with RoPE (``head_dim`` 32) trained to copy a random letter sequence
after a separator. Copying needs a previous-token head and an induction head, so its attention
has structure worth looking at, unlike a randomly initialised model's. Shipped in
``attnviz/demo_model`` and loaded with ``from_pretrained``, offline.
"""

from pathlib import Path

import torch

DEMO_DIR = Path(__file__).resolve().parent / "demo_model"

# The example the book draws: <bos>, 15 letters, the separator, the same 15 letters (32 tokens).
DEMO_TEXT = "<bos> t h e q u i c k b r o w n f x | t h e q u i c k b r o w n f x"


def load_demo(attn_implementation: str = "eager"):
    """Return ``(model, tokenizer)``: the demo ``LlamaForCausalLM`` in eval mode and its tokenizer.

    Both come from the package folder with ``from_pretrained`` (safetensors, no network).
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    if not (DEMO_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the demo checkpoint is missing from {DEMO_DIR}; run `python scripts/train_demo.py` in the "
            "attnviz repository to create it."
        )
    from transformers.utils import logging as hf_logging

    # No "Loading weights" bar for 21 tensors: in a notebook it is an ipywidget, and a book page
    # showing one pulls require.js and the widget manager from a CDN (chapter 4 did).
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = LlamaForCausalLM.from_pretrained(
            DEMO_DIR, attn_implementation=attn_implementation, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(DEMO_DIR)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def demo_example(tokenizer=None) -> torch.Tensor:
    """The ``input_ids`` (batch 1, 32 tokens) the book uses: a letter sequence and its copy."""
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(DEMO_DIR)
    ids = tokenizer.convert_tokens_to_ids(DEMO_TEXT.split())
    return torch.tensor([ids])
