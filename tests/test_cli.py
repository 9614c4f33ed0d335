"""The command line, run as a user would: through the installed `attnviz` script and `python -m`.

The mistakes are checked in-process through ``attnviz.cli.main`` (what the script calls), which
returns the exit code and writes the same one line to stderr, without paying for a new Python
each time.
"""

import os
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


def _run(*args, module=False, env=None):
    command = [sys.executable, "-m", "attnviz", *args] if module else [str(VENV_BIN / "attnviz"), *args]
    environment = {**os.environ, **env} if env else None
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


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


def test_help_names_the_program_and_describes_every_command_and_option(capsys):
    code, out, _ = _main(["--help"], capsys)
    assert code == 0 and out.startswith("usage: attnviz ")
    top = cli._parser()
    assert top.description and top.description in " ".join(out.split())
    (sub,) = [action for action in top._actions if action.dest == "command"]
    assert sorted(sub.choices) == ["check", "render"]
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert all(helps[name] for name in sub.choices), helps
    for name, parser in sub.choices.items():
        code, out, _ = _main([name, "--help"], capsys)
        assert code == 0 and out.startswith(f"usage: attnviz {name} ")
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings}: no help"


def test_no_command_and_argparse_mistakes_are_one_line_naming_attnviz(capsys):
    code, _, err = _main([], capsys)
    assert code == 2 and err.startswith("attnviz: error: ") and "command" in err
    assert len(err.strip().splitlines()) == 1, err
    code, _, err = _main(["render", "--layer", "x", "--out", "x.png"], capsys)
    assert code == 2 and err.startswith("attnviz render: error: ") and err.strip().endswith("(see --help)")
    assert len(err.strip().splitlines()) == 1, err


def _keep_figures(monkeypatch):
    import attnviz.plot

    drawn = []
    head_grid = attnviz.plot.head_grid

    def keep(*args, **kwargs):
        drawn.append(head_grid(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(attnviz.plot, "head_grid", keep)
    return drawn


def test_render_defaults_draw_layer_0_of_16_positions_at_120_dpi(tmp_path, capsys, monkeypatch):
    from PIL import Image

    drawn = _keep_figures(monkeypatch)
    out = tmp_path / "fig.png"
    code, stdout, err = _main(["render", "--out", str(out)], capsys)
    assert code == 0, err
    (fig,) = drawn
    assert fig.get_suptitle() == "Layer 0, causal + RoPE"
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert [image.get_array().shape for image in images] == [(16, 16)] * attnviz.tiny_config().num_attention_heads
    width, height = fig.get_size_inches() * 120
    assert Image.open(out).size == (round(width), round(height))


@pytest.mark.parametrize("suffix", [".svg", ".pdf", ".jpg", ".jpeg", ".JPG"])
def test_render_writes_every_listed_image_format(suffix, tmp_path, capsys):
    out = tmp_path / f"fig{suffix}"
    code, stdout, err = _main(["render", "--length", "4", "--out", str(out)], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout and out.stat().st_size > 0


@pytest.mark.parametrize("layer, ok", [("-2", True), ("-3", False), ("1", True), ("2", False)])
def test_render_layer_bounds(layer, ok, tmp_path, capsys, monkeypatch):
    drawn = _keep_figures(monkeypatch)
    code, _, err = _main(["render", "--length", "4", "--layer", layer, "--out", str(tmp_path / "x.png")], capsys)
    if ok:
        assert code == 0, err
        assert drawn[0].get_suptitle() == f"Layer {layer}, causal + RoPE"
    else:
        assert code == 2 and "the model has 2 layers (0-1)" in err


@pytest.mark.parametrize("length, ok", [(2, False), (3, True), (128, True), (129, False)])
def test_length_bounds(length, ok, capsys, monkeypatch):
    code, _, err = _main(["check", "--length", str(length)], capsys)
    if ok:
        assert code == 0, err
    else:
        assert code == 2 and f"--length must be between 3 and 128; got {length}" in err


@pytest.mark.parametrize("flags", [[], ["--bidirectional", "--no-rope"]])
def test_check_prints_the_report_of_the_patched_model(flags, capsys):
    from attnviz.patch import patched
    from attnviz.probes import probe_report

    code, out, err = _main(["check", *flags], capsys)
    assert code == 0, err
    model = attnviz.tiny_model(attn_implementation="eager", max_position_embeddings=512)
    with patched(model, bidirectional=bool(flags), no_rope=bool(flags)):
        expected = str(probe_report(model))
    assert out.strip() == expected.strip()
    assert "backend eager" in out


def test_a_saved_bidirectional_model_loads_as_itself(tmp_path, capsys):
    from attnviz.patch import LlamaBidirectionalModel

    LlamaBidirectionalModel(attnviz.tiny_config()).save_pretrained(tmp_path, safe_serialization=True)
    code, out, err = _main(["check", "--model", str(tmp_path)], capsys)
    assert code == 0, err
    assert "LlamaBidirectionalModel" in out and "attends to the future: YES" in out
    assert "warning" not in err


def test_an_architecture_transformers_does_not_know_is_warned_about_on_stderr(checkpoint, tmp_path, capsys):
    import json
    import shutil

    folder = tmp_path / "renamed"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = ["NoSuchModelAnywhere"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    code, out, err = _main(["check", "--model", str(folder)], capsys)
    assert code == 0, err
    assert "warning: config.json names NoSuchModelAnywhere" in err and "NoSuchModelAnywhere" not in out


def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("[]", encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"")
    code, _, err = _main(["check", "--model", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip() == f"attnviz: error: --model {tmp_path}: config.json holds a list, not an object of settings"


def test_corrupt_weights_report_the_loaders_first_line(checkpoint, tmp_path, capsys):
    import shutil

    folder = tmp_path / "corrupt"
    shutil.copytree(checkpoint, folder)
    for weights in folder.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(Exception) as raised:
        AutoModel.from_pretrained(folder, use_safetensors=True)
    first_line = str(raised.value).strip().splitlines()[0]
    code, _, err = _main(["check", "--model", str(folder)], capsys)
    assert code == 2
    assert err.strip() == f"attnviz: error: --model {folder}: cannot load it: {first_line}"


def test_render_masks_a_sliding_window_layer_as_the_model_does(tmp_path, capsys, monkeypatch):
    # a tiny Mistral whose window (4) is shorter than the input: the cells outside it are masked
    from transformers import MistralModel

    folder = tmp_path / "mistral"
    MistralModel(attnviz.tiny_config("mistral", sliding_window=4)).save_pretrained(folder, safe_serialization=True)
    drawn = _keep_figures(monkeypatch)
    args = ["render", "--model", str(folder), "--backend", "eager", "--length", "10", "--layer", "-1"]
    code, _, err = _main([*args, "--out", str(tmp_path / "fig.png")], capsys)
    assert code == 0, err
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=ids, output_attentions=True).attentions[-1][0]
    assert (expected[0] == 0).sum() > 10 * 11 // 2 - 10  # the window hides more than the future
    for head, image in enumerate(ax.get_images()[0] for ax in drawn[0].axes if ax.get_images()):
        assert (image.get_array().mask == (expected[head] == 0).numpy()).all(), f"head {head}"


def test_code_shipped_in_the_model_folder_is_never_run(checkpoint, tmp_path, capsys):
    import json
    import shutil

    folder = tmp_path / "with-code"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "custom.py").write_text('raise RuntimeError("the folder\'s own code ran")\n', encoding="utf-8")
    code, out, err = _main(["check", "--model", str(folder)], capsys)
    assert code == 0, err
    assert "LlamaModel" in out and "code ran" not in err


def _keep_pooled(monkeypatch) -> tuple[list[str], list]:
    """The backend each ``render --pool`` model ran on, and each (attention_map result, figure) drawn."""
    import attnviz.longmap
    import attnviz.plot
    from attnviz.families import find_backbone

    backends, drawn = [], []
    attention_map, map_and_distance = attnviz.longmap.attention_map, attnviz.plot.map_and_distance

    def run(model, **kwargs):
        backends.append(find_backbone(model).config._attn_implementation)
        return attention_map(model, **kwargs)

    def draw(result, **kwargs):
        drawn.append((result, map_and_distance(result, **kwargs)))
        return drawn[-1][1]

    monkeypatch.setattr(attnviz.longmap, "attention_map", run)
    monkeypatch.setattr(attnviz.plot, "map_and_distance", draw)
    return backends, drawn


def _expected_map(backend, length, *, layer, head, size, bidirectional=False):
    """attention_map of the tiny model the CLI builds, on the CLI's input (ids seeded with 0)."""
    model = attnviz.tiny_model(attn_implementation=backend)
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    with attnviz.patched(model, bidirectional=bidirectional):
        return attnviz.attention_map(model, layer=layer, head=head, size=size, input_ids=ids)


def test_render_pool_defaults_draw_head_0_of_layer_0_on_sdpa_with_a_linear_scale(tmp_path, capsys, monkeypatch):
    from matplotlib.colors import LogNorm

    backends, drawn = _keep_pooled(monkeypatch)
    code, _, err = _main(["render", "--length", "1024", "--pool", "8", "--out", str(tmp_path / "map.png")], capsys)
    assert code == 0, err
    assert backends == ["sdpa"]  # not the tiny model's own eager, which builds seq x seq masks
    ((result, fig),) = drawn
    assert (result.layer, result.head, tuple(result.pooled.shape)) == (0, 0, (8, 8))
    assert_close(result.pooled, _expected_map("sdpa", 1024, layer=0, head=0, size=8).pooled)
    assert fig.get_suptitle() == "Layer 0, head 0, causal + RoPE: 1,024 tokens"
    assert not isinstance(fig.axes[0].get_images()[0].norm, LogNorm)


def test_render_pool_draws_the_layer_head_variant_and_scale_asked_for(tmp_path, capsys, monkeypatch):
    from matplotlib.colors import LogNorm

    backends, drawn = _keep_pooled(monkeypatch)
    args = ["render", "--length", "512", "--pool", "16", "--layer", "1", "--head", "-4", "--bidirectional"]
    code, _, err = _main([*args, "--log", "--backend", "eager", "--out", str(tmp_path / "map.png")], capsys)
    assert code == 0, err
    assert backends == ["eager"]
    ((result, fig),) = drawn
    assert (result.layer, result.head, tuple(result.pooled.shape)) == (1, 0, (16, 16))  # head -4 of 4 is head 0
    expected = _expected_map("eager", 512, layer=1, head=0, size=16, bidirectional=True)
    assert_close(result.pooled, expected.pooled)
    assert result.allowed.all()  # bidirectional: every block may attend to every other
    assert fig.get_suptitle() == "Layer 1, head -4, bidirectional + RoPE: 512 tokens"
    assert isinstance(fig.axes[0].get_images()[0].norm, LogNorm)


@pytest.mark.parametrize("head, ok", [("3", True), ("4", False), ("-5", False)])
def test_render_pool_head_bounds(head, ok, tmp_path, capsys):
    args = ["render", "--length", "64", "--pool", "8", "--head", head, "--out", str(tmp_path / "x.png")]
    code, _, err = _main(args, capsys)
    if ok:
        assert code == 0, err
    else:
        assert code == 2
        assert err.strip() == f"attnviz: error: --head {head}: the model has 4 heads per layer (0-3)"


@pytest.mark.parametrize("pool, ok", [("1", False), ("2", True), ("16", True), ("17", False)])
def test_render_pool_bounds(pool, ok, tmp_path, capsys):
    args = ["render", "--length", "16", "--pool", pool, "--out", str(tmp_path / "x.png")]
    code, _, err = _main(args, capsys)
    if ok:
        assert code == 0, err
    else:
        assert code == 2
        assert err.strip() == f"attnviz: error: --pool {pool}: blocks per side, between 2 and --length (16)"


def test_length_messages_in_full(tmp_path, capsys):
    code, _, err = _main(["render", "--length", "300", "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2
    more = "with --pool N, render draws longer inputs as a pooled map"
    assert err.strip() == f"attnviz: error: --length must be between 3 and 128; {more}; got 300"
    code, _, err = _main(["check", "--length", "300"], capsys)
    assert code == 2 and err.strip() == "attnviz: error: --length must be between 3 and 128; got 300"


def test_help_names_the_pool_argument_n(capsys):
    code, out, _ = _main(["render", "--help"], capsys)
    assert code == 0
    assert "[--pool N]" in out  # the usage line
    assert "  --pool N " in out  # the option's entry, as its help text says "N x N blocks"


def test_a_folder_of_pickled_weights_beside_another_safetensors_file_is_refused(tmp_path, capsys):
    # transformers would fall back to pytorch_model.bin (a pickle) when safetensors are not required
    from safetensors.torch import save_file

    model = LlamaForCausalLM(attnviz.tiny_config())
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    save_file({"step": torch.zeros(1)}, tmp_path / "optimizer.safetensors")
    code, out, err = _main(["check", "--model", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.strip() == (
        f"attnviz: error: --model {tmp_path}: cannot load it: "
        f"Error no file named model.safetensors found in directory {tmp_path}."
    )


def test_code_of_an_unknown_model_type_is_not_run_even_if_the_user_would_say_yes(
    checkpoint, tmp_path, capsys, monkeypatch
):
    # transformers asks on stdin whether to run a folder's code for a model_type it does not know,
    # unless trust_remote_code is given: attnviz gives False, so nothing asks and nothing runs
    import io
    import json
    import shutil

    folder = tmp_path / "custom-type"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "attnviz_custom"
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "custom.py").write_text('raise RuntimeError("the folder\'s own code ran")\n', encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, err = _main(["check", "--model", str(folder)], capsys)
    assert code == 2 and out == ""  # no prompt
    assert err.startswith(f"attnviz: error: --model {folder}: cannot load it: The repository {folder} contains custom")
    assert "code ran" not in err and len(err.strip().splitlines()) == 1, err


def test_config_json_is_read_as_utf8_whatever_the_locale(checkpoint, tmp_path):
    import json
    import shutil

    folder = tmp_path / "accented"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["description"] = "un modèle minuscule"
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    # here too, in this process: mutmut gives a mutant only the tests that reach its function in
    # the pytest process, and a subprocess's calls are not seen (mutant _loader_for 3 survived)
    assert cli._loader_for(folder) is AutoModel
    # the C locale without UTF-8 mode or locale coercion: Python's default encoding is then ASCII
    ascii_locale = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "utf-8"}
    result = _run("check", "--model", str(folder), module=True, env=ascii_locale)
    assert result.returncode == 0, result.stderr
    assert "LlamaModel" in result.stdout


def test_a_loader_error_without_a_message_is_reported_by_its_type(checkpoint, capsys, monkeypatch):
    # no real load error found has an empty message: this stands in for one
    def fail(*args, **kwargs):
        raise RuntimeError()

    monkeypatch.setattr(AutoModel, "from_pretrained", fail)
    code, _, err = _main(["check", "--model", str(checkpoint)], capsys)
    assert code == 2 and err.strip() == f"attnviz: error: --model {checkpoint}: cannot load it: RuntimeError"
