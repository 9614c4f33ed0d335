"""The shipped demo model: loadable offline, small, and with a positional head that NoRoPE breaks."""

import os
import subprocess
import sys

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

import attnviz
from attnviz.demo import DEMO_DIR
from attnviz.probes import offset_score


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


# Run in a fresh Python where opening any connection raises, and the hub libraries are told they
# are offline: the demo must come from the package folder alone.
OFFLINE = """
import socket

def refuse(*args, **kwargs):
    raise OSError("the network is off in this test")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

import attnviz

model, tokenizer = attnviz.load_demo()
ids = attnviz.demo_example()
print(type(model).__name__, model.training, type(tokenizer).__name__, ids.shape[1], model.config.num_hidden_layers)
"""


def test_loads_offline_with_from_pretrained(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-cache")}
    result = subprocess.run([sys.executable, "-c", OFFLINE], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    name, training, tokenizer, length, layers = result.stdout.split()
    assert (name, training, length, layers) == ("LlamaForCausalLM", "False", "32", "2")
    assert "Tokenizer" in tokenizer


def test_the_demo_is_the_book_s_small_model(demo):
    model, tokenizer = demo
    assert isinstance(model, LlamaForCausalLM) and not model.training
    assert isinstance(tokenizer, PreTrainedTokenizerBase)
    assert model.config.num_hidden_layers == 2 and model.config.head_dim == 32
    assert model.config.num_attention_heads == 4


def test_checkpoint_is_safetensors_and_small():
    files = {p.name: p.stat().st_size for p in DEMO_DIR.iterdir()}
    assert "model.safetensors" in files and not any(n.endswith((".bin", ".pt", ".pkl")) for n in files)
    total = sum(files.values())
    print(f"demo folder: {total / 2**20:.2f} MB")
    assert total <= 2 * 2**20


def test_example_is_the_copy_task(demo):
    _, tokenizer = demo
    ids = attnviz.demo_example(tokenizer)
    assert ids.shape == (1, 32) and ids.shape[1] <= 64
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[0] == "<bos>" and tokens[16] == "|" and tokens[1:16] == tokens[17:]
    assert torch.equal(attnviz.demo_example(), ids)


def test_the_model_copies(demo):
    model, _ = demo
    ids = attnviz.demo_example()
    with torch.no_grad():
        predicted = model(ids).logits.argmax(-1)[0]
    # after the first copied letter, each next letter is predictable from the first half
    accuracy = (predicted[17:31] == ids[0, 18:32]).float().mean().item()
    print(f"copy accuracy on the example: {accuracy:.2f}")
    assert accuracy >= 0.9


def test_previous_token_head_breaks_under_no_rope(demo):
    model, _ = demo
    ids = attnviz.demo_example()
    scores = offset_score(attnviz.capture_attention(model, input_ids=ids)[0])
    with attnviz.no_rope(model):
        without = offset_score(attnviz.capture_attention(model, input_ids=ids)[0])
    head = int(scores.argmax())
    print(f"layer 0 offset -1 scores with RoPE {scores.tolist()}, with NoRoPE {without.tolist()}")
    assert scores[head] >= 0.5, "no previous-token head in layer 0"
    assert without[head] < 0.5 * scores[head], "the previous-token pattern survived NoRoPE"


def test_offset_score_checks_its_input():
    weights = torch.eye(5)[None, None].roll(1, dims=-2)  # every query looks one step back... mostly
    assert offset_score(torch.diag_embed(torch.ones(4), offset=-1)[None, None][..., :5, :5]).item() == 1.0
    with pytest.raises(ValueError, match="batch, heads"):
        offset_score(weights[0])
    with pytest.raises(ValueError, match="leaves no query"):
        offset_score(torch.ones(1, 1, 1, 1), offset=-1)


def test_loading_shows_no_progress_bar_and_leaves_the_setting_alone(capfd):
    # in a notebook transformers' "Loading weights" bar is an ipywidget, which makes a book page
    # fetch the widget manager from a CDN (chapter 4 loads the demo)
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()  # other tests may have turned the bars off
    hf_logging.enable_progress_bar()
    try:
        attnviz.load_demo()
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled(), "the caller's progress-bar setting is put back"
        hf_logging.disable_progress_bar()
        attnviz.load_demo()
        assert not hf_logging.is_progress_bar_enabled(), "a caller's 'off' stays off"
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()
