"""The command line, run as a user would: through the installed `attnviz` script and `python -m`.

The mistakes are checked in-process through ``attnviz.cli.main`` (what the script calls), which
returns the exit code and writes the same one line to stderr, without paying for a new Python
each time.
"""

import subprocess
import sys

import pytest
import torch
from conftest import VENV_BIN, unpatched_attentions
from torch.testing import assert_close
from transformers import AutoModel, GPT2Config, GPT2Model, LlamaForCausalLM

import attnviz
from attnviz import cli


def _main(args, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``attnviz <args>``, run in this process."""
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # argparse's own errors exit through _Parser.error
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run(*args, module=False):
    command = [sys.executable, "-m", "attnviz", *args] if module else [str(VENV_BIN / "attnviz"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(attnviz.tiny_config()).save_pretrained(path, safe_serialization=True)
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


def test_render_pool_draws_one_head_of_a_long_input(tmp_path, capsys):
    out = tmp_path / "map.png"
    args = ["render", "--length", "4096", "--pool", "64", "--layer", "1", "--head", "2", "--log", "--out", str(out)]
    code, stdout, err = _main(args, capsys)
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in stdout


@pytest.mark.parametrize(
    "flags, layer",
    [([], 0), (["--bidirectional"], 1), (["--no-rope"], 1), (["--bidirectional", "--no-rope"], 0)],
    ids=["plain-layer0", "bidirectional-layer1", "no-rope-layer1", "both-layer0"],
)
def test_render_draws_the_layer_and_variant_asked_for(flags, layer, checkpoint, tmp_path, capsys, monkeypatch):
    # What the figure shows, head by head, against the eager checkpoint's own output_attentions for
    # that variant (conftest.unpatched_attentions): a render that ignored a flag or drew another
    # layer would draw other numbers.
    from matplotlib.figure import Figure

    import attnviz.plot

    drawn: list[Figure] = []
    head_grid = attnviz.plot.head_grid

    def keep(*args, **kwargs):
        drawn.append(head_grid(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(attnviz.plot, "head_grid", keep)
    out = tmp_path / "fig.png"
    args = ["render", "--model", str(checkpoint), "--backend", "sdpa", "--length", "12", "--layer", str(layer)]
    code, stdout, err = _main([*args, *flags, "--out", str(out)], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    eager = AutoModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    # the CLI's input: --length random ids from a generator seeded with 0
    ids = torch.randint(0, eager.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    variant = {"bidirectional": "--bidirectional" in flags, "no_rope": "--no-rope" in flags}
    expected = unpatched_attentions(eager, ids, **variant)[layer][0]  # (heads, q_len, k_len)
    (fig,) = drawn
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == expected.shape[0] == 4
    for head, image in enumerate(images):
        array = image.get_array()
        assert_close(torch.from_numpy(array.filled(0.0)).float(), expected[head], msg=f"head {head}")
        assert (array.mask == (expected[head] == 0).numpy()).all(), f"head {head}: masked cells"
    name = " + ".join(
        ["bidirectional" if variant["bidirectional"] else "causal", "NoRoPE" if variant["no_rope"] else "RoPE"]
    )
    assert fig.get_suptitle() == f"Layer {layer}, {name}"


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
        (["render", "--length", "300", "--out", "{tmp}/x.png"], "with --pool N, render draws longer inputs"),
        (["render", "--head", "1", "--out", "{tmp}/x.png"], "--head needs --pool N"),
        (["render", "--log", "--out", "{tmp}/x.png"], "--log needs --pool N"),
        (["render", "--length", "100", "--pool", "200", "--out", "{tmp}/x.png"], "--pool 200: blocks per side"),
        (["render", "--length", "64", "--pool", "8", "--head", "7", "--out", "{tmp}/x.png"], "the model has 4 heads"),
        (
            ["render", "--length", "300000", "--pool", "512", "--backend", "eager", "--layer", "1", "--out", "x.png"],
            "Switch the backend first: --backend sdpa",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    code, _, err = _main([a.replace("{tmp}", str(tmp_path)) for a in args], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_the_installed_script_reports_a_mistake_the_same_way():
    result = _run("render", "--out", "fig.txt")
    assert result.returncode == 2
    assert result.stderr.strip() == "attnviz: error: --out fig.txt: use a .png, .svg, .pdf or .jpg file name"


def test_refuses_pickles_and_other_families(tmp_path, capsys):
    bin_only = tmp_path / "bin-only"
    LlamaForCausalLM(attnviz.tiny_config()).save_pretrained(bin_only, safe_serialization=False)
    for weights in bin_only.glob("*.safetensors"):  # older writers may still add them
        weights.unlink()
    code, _, err = _main(["check", "--model", str(bin_only)], capsys)
    assert code == 2 and "safetensors only" in err

    gpt2 = tmp_path / "gpt2"
    GPT2Model(
        GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(gpt2)
    code, _, err = _main(["check", "--model", str(gpt2)], capsys)
    supported = "Supported backbones: LlamaModel, MistralModel, Qwen2Model, Qwen3Model"
    assert code == 2 and f"got GPT2Model. {supported}" in err
    assert len(err.strip().splitlines()) == 1
