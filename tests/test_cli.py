"""The command line, run as a user would: through the installed `attnviz` script and `python -m`."""

import subprocess
import sys

import pytest
from conftest import VENV_BIN
from transformers import GPT2Config, GPT2Model, LlamaForCausalLM

import attnviz


def _run(*args, module=False):
    command = [sys.executable, "-m", "attnviz", *args] if module else [str(VENV_BIN / "attnviz"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(attnviz.tiny_llama_config()).save_pretrained(path, safe_serialization=True)
    return path


def test_check_prints_the_probe_report():
    result = _run("check", "--backend", "sdpa")
    assert result.returncode == 0, result.stderr
    assert "attends to the future: no (causal)" in result.stdout
    assert "backend sdpa" in result.stdout


def test_check_with_both_patches_on_a_local_checkpoint(checkpoint):
    result = _run("check", "--model", str(checkpoint), "--bidirectional", "--no-rope", module=True)
    assert result.returncode == 0, result.stderr
    assert "LlamaModel" in result.stdout
    assert "attends to the future: YES" in result.stdout
    assert "uses positions:        no" in result.stdout


def test_render_writes_a_png(tmp_path, checkpoint):
    out = tmp_path / "fig.png"
    result = _run(
        "render", "--model", str(checkpoint), "--layer", "1", "--backend", "sdpa", "--bidirectional", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["render"], "required: --out"),
        (["render", "--out", "x.png", "--backend", "flash"], "invalid choice: 'flash'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["render", "--out", "/no/such/folder/x.png"], "folder /no/such/folder does not exist"),
        (["render", "--out", "fig.txt"], "use a .png"),
        (["render", "--out", "{tmp}/x.png", "--layer", "7"], "the model has 2 layers"),
        (["check", "--model", "/no/such/model"], "no such folder"),
        (["check", "--model", "{tmp}"], "no config.json"),
        (["check", "--length", "500"], "--length must be between 3 and 128"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = _run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_refuses_pickles_and_other_families(tmp_path):
    bin_only = tmp_path / "bin-only"
    LlamaForCausalLM(attnviz.tiny_llama_config()).save_pretrained(bin_only, safe_serialization=False)
    for weights in bin_only.glob("*.safetensors"):  # older writers may still add them
        weights.unlink()
    result = _run("check", "--model", str(bin_only))
    assert result.returncode == 2 and "safetensors only" in result.stderr

    gpt2 = tmp_path / "gpt2"
    GPT2Model(
        GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(gpt2)
    result = _run("check", "--model", str(gpt2))
    supported = "Supported backbones: LlamaModel, MistralModel, Qwen2Model, Qwen3Model"
    assert result.returncode == 2 and f"got GPT2Model. {supported}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
