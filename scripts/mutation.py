"""Mutation testing of attnviz's core modules with mutmut: does a broken attnviz turn the tests red?

mutmut (3.x) changes the code one small step at a time (``<`` to ``<=``, ``True`` to ``False``, an
argument dropped, ...) and runs the tests that reach the changed function; a mutant the tests
still pass ("survived") is a behaviour nothing checks. Each module is run on its own, against the
fast-lane test files that cover it, in a scratch copy of the repository under
``_build/mutation/<module>/`` (mutmut writes its ``mutants/`` folder next to the code it mutates),
so the checkout is never touched.

    python scripts/mutation.py                    # every module, one after the other
    python scripts/mutation.py --module patch     # one module (repeat --module for more)

It writes each module's killed/survived/timeout counts, its run time and the machine's load to
``benchmarks/results/mutation.json`` (other modules' entries are kept), with every surviving
mutant's diff and, where one is recorded in ``EQUIVALENT`` below, why it is equivalent. It exits 1
when a module has a survivor without a recorded reason: kill it with a test, or explain it here.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "_build" / "mutation"
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"

# module -> (files to mutate, the fast-lane test files that cover them). mutmut runs, for each
# mutant, only those tests that reached the mutated function when it ran them once without mutants.
MODULES = {
    "patch": (["src/attnviz/patch.py"], ["tests/test_patch.py", "tests/test_hostile.py", "tests/test_probes.py"]),
    "probes": (["src/attnviz/probes.py"], ["tests/test_probes.py", "tests/test_hostile.py", "tests/test_demo.py"]),
    # capture.py also holds what attention_map streams (attention_rows a block of rows at a time,
    # widen, check_forward_memory, run_layers without on_output): test_longmap.py checks those
    "capture": (
        ["src/attnviz/capture.py"],
        ["tests/test_capture.py", "tests/test_families.py", "tests/test_longmap.py"],
    ),
    "reference": (
        ["src/attnviz/reference.py"],
        ["tests/test_reference.py", "tests/test_capture.py", "tests/test_families.py"],
    ),
    "families": (["src/attnviz/families.py"], ["tests/test_families.py", "tests/test_patch.py"]),
    "cli": (["src/attnviz/cli.py"], ["tests/test_cli.py"]),
    "explorers": (["src/attnviz/view.py", "src/attnviz/explorer.py"], ["tests/test_explorer.py"]),
}

# Functions left out: the explorers' widget layout and drawing (checked by eye and in the browser
# tests), not the data code the issue of correctness lives in.
NOT_MUTATED = {"src/attnviz/explorer.py": ["__init__", "_render", "_ipython_display_"]}

# Lines left out, as mutmut's do_not_mutate_patterns (regular expressions searched in each line):
# the prose of error messages and warnings. Tests pin each message by the words that tell the
# reader what happened and what to do; padding or re-casing the rest of its text is not a change
# of behaviour.
PROSE = [
    r"^\s*f?\"[^\"]*\"\s*\)?,?\s*$",  # a line that is only a piece of a message
    r"^\s*raise \w+\(f?\"",  # raise SomeError("message")
]

# Surviving mutants that cannot be told apart from the real code by any test, and why. Keyed by
# mutmut's mutant name (mutation.json shows each one's diff beside its reason); a name whose
# function changes gets a new number, and the run then reports it again without a reason.
_AROUND = "a NoRoPE made by around() reads its scaling from the rotary module it replaced, never its own"
_IN_TABLE = "the hook id is always in torch's table: pop's default is never used"
_FIRST = "the first patch of its kind sets this field before anything reads it"
_RESET = "the value left on restore is overwritten by the next patch before anything reads it"
_SHALLOW = (
    "a shallow copy of the config is enough: the patch writes only top-level fields (is_causal, and "
    "transformers the backend), and Llama-family configs have no nested sub-configs"
)
_KEYWORD_WINS = (
    "every call gets is_causal=False as a keyword (pre-hook or forward), and transformers 5.24 reads the "
    "keyword before the config"
)
_FLASH = "flash attention has no CPU kernel: the fast lane cannot run a flash model"
_NO_SKIP = (
    "transformers 5.24's create_bidirectional_mask turns allow_is_bidirectional_skip off itself when an "
    "and_mask_function (the packing) is given"
)
_STACKLEVEL = (
    "which frame a warning names: mutmut's trampolines add frames, so under mutation testing no test can "
    "pin it (tests/test_patch.py checks the warning itself)"
)
_OTHER_DRAW = (
    "the last input is replaced by another random draw either way: which seed or row it is taken from "
    "changes the size of the effect by chance, not what the probe measures (tests/test_probes.py checks "
    "that only the last input changes)"
)
_AT_THRESHOLD = (
    "an effect exactly equal to the threshold (floats from different outputs) does not occur: test_verdicts "
    "checks every effect is below a tenth of it or above 100 times it"
)
_FOUR_DIMS = "offset_score refuses anything but 4D weights, where dimension +2 is dimension -2"
_CPU_ONLY = (
    "only the device of a tensor made here changes (None or the default): the fast lane runs on the CPU, "
    "where that is the same device; on another one the mixed devices would raise"
)
# capture.py
_ASCII = "/proc/meminfo is ASCII: 'ascii', 'ASCII' and the locale's encoding (None or left out) read it alike"
_ONE_HEAD_DIM = (
    "every mask form has a head dimension of size 1 (transformers' 4D masks, a BlockMask evaluated with H=1, "
    "the computed ones), so any over it, or flattening it with its neighbour, changes nothing"
)
_FOUR_D = "the mask is 4D (dim() == 4 is checked, or built so): dimension +2 is dimension -2"
_TWO_OUTPUTS = (
    "a Llama-family attention module always returns a tuple of two, (output, weights or None): output[1] "
    "is taken either way"
)
_EAGER_NO_PROJECTIONS = (
    "eager returns its own weights, which capture keeps: the projections recorded from an eager layer are "
    "never read, and are dropped with its record after the layer"
)
_KEYWORD_HIDDEN = (
    "transformers 5.24's decoder layers pass hidden_states to self_attn as a keyword: args is empty, and "
    "the keyword is already recorded with the others"
)
_IS_CAUSAL_SET = "every Llama-family attention module sets is_causal in __init__: getattr's default is never used"
_TRANSFORMERS_HEADLESS = (
    "transformers' mask functions never read the head index, and create_mask takes H=None as 1: capture "
    "evaluates one mask for every head either way"
)
_OUTSIDE_BIAS = (
    "transformers writes only 0 and the dtype's minimum; any bias at or below min/3 gives its key weight exactly "
    "0 whichever side of the threshold it falls (a row with no other key is spread over the keys it can reach "
    "either way), so only which zero weights are computed moves"
)
_EXPAND_ONE = "dimension 1 of the computed mask has size 1: expand keeps it for -1 and for 1 alike"
_NO_BATCH = "MaskRows.__init__ does not read batch (the masks carry their own)"
_ONE_KEY = (
    "max(2, n) differs from max(1, n) only for n = batch x heads x keys = 1: one key, so one query row "
    "(no cache), one block whatever the rows per block"
)
_FLOAT_INDEX = (
    "torch truncates a list of float indices: h / groups indexes the key head h // groups, heads being "
    "non-negative (head_indices)"
)
_SAME_PROJECTIONS = (
    "only attention_map uses the default, without on_output: the forward then stops in the last layer's "
    "pre-hook, before q_proj and k_proj run, so no projection is recorded either way"
)
_HAS_FLEX = "torch 2.13 (requirements.txt) has flex attention: the ImportError branch never runs"
_ONE_QUERY = "a single query is the last position: causal or not, it may attend to every key"
_ONLY_FLASH = (
    "eager, sdpa and flex always get a 4D mask or a BlockMask when a sliding window cuts keys (k_len > "
    "window): only flash gets none, so no other backend reaches this test"
)
_WHOLE_WINDOW = "with k_len == window every |i - j| < window: the window masks nothing"
_CPU_SOFTMAX = (
    "torch 2.13's CPU softmax of a bfloat16 or float16 tensor computes in float32 and rounds once, the same "
    "bits as softmax(dtype=float32).to(dtype) (checked on 105 shapes and scales, 0 mismatches; the fast lane "
    "is CPU; on a GPU the two may differ, and the dtype=float32 transformers uses is kept)"
)
EQUIVALENT: dict[str, str] = {
    "attnviz.probes.x_probe_report__mutmut_32": _OTHER_DRAW,
    "attnviz.probes.x_probe_report__mutmut_33": _OTHER_DRAW,
    "attnviz.probes.x_probe_report__mutmut_34": _OTHER_DRAW,
    "attnviz.probes.x_probe_report__mutmut_35": _OTHER_DRAW,
    "attnviz.probes.x_probe_report__mutmut_98": "versions(warn=None) does not warn, as warn=False does: None is falsy",
    "attnviz.probes.x_probe_report__mutmut_102": _AT_THRESHOLD,
    "attnviz.probes.x_probe_report__mutmut_103": _AT_THRESHOLD,
    "attnviz.probes.x__probe_inputs__mutmut_17": (
        "the inputs are made on the CPU: without device= they stay there, which is the model's device in the "
        "fast lane; on another device the mixed devices would raise"
    ),
    "attnviz.probes.x_offset_score__mutmut_4": _FOUR_DIMS,
    "attnviz.probes.x_offset_score__mutmut_15": _FOUR_DIMS,
    "attnviz.patch.xǁNoRoPEǁ__init____mutmut_7": "rope_attention_scaling(None) is 1.0, the value for config=None",
    "attnviz.patch.xǁNoRoPEǁaround__mutmut_3": _AROUND,
    "attnviz.patch.xǁNoRoPEǁaround__mutmut_5": _AROUND,
    "attnviz.patch.xǁNoRoPEǁaround__mutmut_10": _AROUND,
    "attnviz.patch.x__call_kwargs__mutmut_12": "zip(strict=None) is not strict, like strict=False",
    "attnviz.patch.x__call_kwargs__mutmut_15": "zip without strict= is not strict, like strict=False",
    "attnviz.patch.xǁLlamaBidirectionalModelǁforward__mutmut_5": (
        "_call_kwargs reads the module only for its signature, and here the signature is given (LlamaModel.forward)"
    ),
    "attnviz.patch.xǁInstancePatchǁ__init____mutmut_4": "apply(), called next, sets active to True before it is read",
    "attnviz.patch.xǁ_PatchRecordǁ__init____mutmut_2": _FIRST,
    "attnviz.patch.xǁ_PatchRecordǁ__init____mutmut_3": _FIRST,
    "attnviz.patch.xǁ_PatchRecordǁ__init____mutmut_4": _FIRST,
    "attnviz.patch.xǁ_PatchRecordǁ__init____mutmut_5": _FIRST,
    "attnviz.patch.xǁ_PatchRecordǁ__init____mutmut_6": _FIRST,
    "attnviz.patch.xǁbidirectionalǁ_apply_first__mutmut_5": _SHALLOW,
    "attnviz.patch.xǁbidirectionalǁ_apply_first__mutmut_6": _KEYWORD_WINS,
    "attnviz.patch.xǁbidirectionalǁ_apply_first__mutmut_7": _KEYWORD_WINS,
    "attnviz.patch.xǁLlamaBidirectionalModelǁ__init____mutmut_3": _SHALLOW,
    "attnviz.patch.xǁbidirectionalǁ_undo_last__mutmut_4": _IN_TABLE,
    "attnviz.patch.xǁbidirectionalǁ_undo_last__mutmut_7": _IN_TABLE,
    "attnviz.patch.xǁbidirectionalǁ_undo_last__mutmut_13": _RESET,
    "attnviz.patch.xǁbidirectionalǁ_undo_last__mutmut_14": _RESET,
    "attnviz.patch.xǁno_ropeǁ_undo_last__mutmut_3": _RESET,
    "attnviz.patch.x__mask_packed_sequences__mutmut_26": _FLASH,
    "attnviz.patch.x__mask_packed_sequences__mutmut_27": _FLASH,
    "attnviz.patch.x__mask_packed_sequences__mutmut_49": _NO_SKIP,
    "attnviz.patch.x__mask_packed_sequences__mutmut_54": _NO_SKIP,
    "attnviz.patch.x__mask_packed_sequences__mutmut_56": _NO_SKIP,
    "attnviz.patch.xǁno_ropeǁ_apply_first__mutmut_4": _STACKLEVEL,
    "attnviz.patch.xǁno_ropeǁ_apply_first__mutmut_6": _STACKLEVEL,
    "attnviz.patch.xǁno_ropeǁ_apply_first__mutmut_7": _STACKLEVEL,
    "attnviz.reference.x_eager_attention__mutmut_43": _CPU_SOFTMAX,
    "attnviz.reference.x_eager_attention__mutmut_46": _CPU_SOFTMAX,
    "attnviz.reference.x_rope_cos_sin__mutmut_10": "arange(...) / head_dim is true division: float32 either way",
    "attnviz.reference.x_rope_cos_sin__mutmut_14": "arange(...) / head_dim is true division: float32 either way",
    "attnviz.capture.x__available_bytes__mutmut_7": _ASCII,
    "attnviz.capture.x__available_bytes__mutmut_9": _ASCII,
    "attnviz.capture.x__available_bytes__mutmut_13": _ASCII,
    "attnviz.capture.x__reach__mutmut_10": _ONE_HEAD_DIM,
    "attnviz.capture.x__reach__mutmut_14": _ONE_HEAD_DIM,
    "attnviz.capture.x__reach__mutmut_13": _FOUR_D,
    "attnviz.capture.xǁMaskRowsǁ_rows_of__mutmut_4": _FOUR_D,
    "attnviz.capture.xǁMaskRowsǁ_computed__mutmut_58": _EXPAND_ONE,
    "attnviz.capture.x_attention_rows__mutmut_15": _NO_BATCH,
    "attnviz.capture.x_attention_rows__mutmut_18": _CPU_ONLY,
    "attnviz.capture.x_block_rows__mutmut_11": _ONE_KEY,
    "attnviz.capture.x_capture_attention__mutmut_42": _TWO_OUTPUTS,
    "attnviz.capture.x_capture_attention__mutmut_44": _TWO_OUTPUTS,
    "attnviz.capture.x_capture_attention__mutmut_45": _TWO_OUTPUTS,
    "attnviz.capture.x_capture_attention__mutmut_102": _EAGER_NO_PROJECTIONS,
    "attnviz.capture.x_capture_attention__mutmut_103": _EAGER_NO_PROJECTIONS,
    "attnviz.capture.x_query_key_states__mutmut_82": _FLOAT_INDEX,
    "attnviz.capture.x_run_layers__mutmut_1": _SAME_PROJECTIONS,
    "attnviz.capture.x_run_layers__mutmut_9": _KEYWORD_HIDDEN,
    "attnviz.capture.x_run_layers__mutmut_10": _KEYWORD_HIDDEN,
    "attnviz.capture.x_run_layers__mutmut_11": _KEYWORD_HIDDEN,
    "attnviz.capture.x_run_layers__mutmut_12": _KEYWORD_HIDDEN,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_1": _HAS_FLEX,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_32": _IS_CAUSAL_SET,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_35": _IS_CAUSAL_SET,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_38": _IS_CAUSAL_SET,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_43": _ONE_QUERY,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_48": _ONLY_FLASH,
    "attnviz.capture.xǁMaskRowsǁ__init____mutmut_53": _WHOLE_WINDOW,
    "attnviz.capture.xǁMaskRowsǁrows__mutmut_89": _TRANSFORMERS_HEADLESS,
    "attnviz.capture.xǁMaskRowsǁrows__mutmut_100": _TRANSFORMERS_HEADLESS,
    "attnviz.capture.xǁMaskRowsǁrows__mutmut_129": _OUTSIDE_BIAS,
    "attnviz.capture.xǁMaskRowsǁrows__mutmut_132": _OUTSIDE_BIAS,
}

# The family registry's survivors (families.py), and why each is equivalent.
_FAMILIES_EQUIVALENT: dict[str, str] = {}


# The command line's survivors (cli.py), and why each is equivalent.
_HELP_PROSE = "--help prose padded or re-cased: the text is still there and nothing reads it (tests check each has one)"
_BACKEND_NAME = "matplotlib's backend names are case-insensitive: 'agg' and 'AGG' are 'Agg'"
_TWICE = (
    "the backend is given twice, when the model is built and by set_attn_implementation after it: "
    "dropping either one still leaves the model on --backend (or on its own default without it)"
)
_MAX_POSITIONS = (
    "the tiny model's rope_type is 'default': its rotary inv_freq comes from rope_theta and head_dim, "
    "dynamic_rope_update acts only on 'dynamic' and 'longrope', and nothing render or check runs "
    "(LlamaModel's forward, its masks, attnviz) reads max_position_embeddings: in transformers 5.24 "
    "only generate() does. 512, 513 or --length positions give the same weights"
)
_CLI_EQUIVALENT: dict[str, str] = {
    "attnviz.cli.x__load__mutmut_66": _TWICE,
    "attnviz.cli.x__load__mutmut_67": _TWICE,
    "attnviz.cli.x__load__mutmut_79": _TWICE,
    "attnviz.cli.x__load__mutmut_92": _TWICE,
    "attnviz.cli.x__load__mutmut_93": _TWICE,
    "attnviz.cli.x__parser__mutmut_8": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_9": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_10": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_29": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_30": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_39": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_40": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_51": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_52": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_63": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_64": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_76": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_77": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_85": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_86": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_99": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_100": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_113": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_114": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_115": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_124": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_125": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_136": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_137": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_149": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_150": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_158": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_159": _HELP_PROSE,
    "attnviz.cli.x__parser__mutmut_17": "add_subparsers defaults parser_class to the parser's own class, _Parser",
    "attnviz.cli.x_render__mutmut_3": _BACKEND_NAME,
    "attnviz.cli.x_render__mutmut_4": _BACKEND_NAME,
    "attnviz.cli.x__loader_for__mutmut_8": "Python's codec names are case-insensitive: 'UTF-8' is 'utf-8'",
    "attnviz.cli.x__load__mutmut_103": "torch.randint(high, size) draws from [0, high), as randint(0, high, size) does",
    "attnviz.cli.x_render__mutmut_65": "attentions are (batch, heads, q, k): shape[2] and shape[-2] are both q",
    "attnviz.cli.x__load__mutmut_47": _MAX_POSITIONS,
    "attnviz.cli.x__load__mutmut_53": _MAX_POSITIONS,
}

# The explorers' survivors (view.py, explorer.py), and why each is equivalent.
_ASCII_ASSETS = (
    "the package's static files are ASCII (tests/test_explorer.py::test_the_static_files_are_ascii), and the "
    "locale's encoding (encoding=None or left out) reads and writes ASCII as utf-8 does"
)
_UTF8_NAME = "Python's codec names are case-insensitive: 'UTF-8' is 'utf-8'"
_FALSY = "patched() tests `if bidirectional:` and `if no_rope:`: None is falsy, as False is"
_LITERAL_ORDER = (
    "render_live's fields is a dict literal: its keys come in one fixed order, so json.dumps gives one text per "
    "input sorted or not, and the id stays a deterministic hash of the fields and the model (only its digits change)"
)
_EXPLORERS_EQUIVALENT: dict[str, str] = {
    "attnviz.explorer.xǁAttentionExplorerǁ_update__mutmut_21": _FALSY,
    "attnviz.explorer.xǁAttentionExplorerǁ_update__mutmut_22": _FALSY,
    "attnviz.view.x__asset__mutmut_1": _ASCII_ASSETS,
    "attnviz.view.x__asset__mutmut_4": _UTF8_NAME,
    "attnviz.view.x_live_view__mutmut_9": _ASCII_ASSETS,
    "attnviz.view.x_live_view__mutmut_11": _UTF8_NAME,
    "attnviz.view.x_write_site_assets__mutmut_10": _ASCII_ASSETS,
    "attnviz.view.x_write_site_assets__mutmut_12": _ASCII_ASSETS,
    "attnviz.view.x_write_site_assets__mutmut_16": _UTF8_NAME,
    "attnviz.view.x__script__mutmut_14": (
        "with re.IGNORECASE, '</(SCRIPT)' matches what '</(script)' does, and \\1 puts back the text it matched"
    ),
    "attnviz.view.x_render_live__mutmut_28": _LITERAL_ORDER,
    "attnviz.view.x_render_live__mutmut_30": _LITERAL_ORDER,
    "attnviz.view.x_render_live__mutmut_31": _LITERAL_ORDER,
}

EQUIVALENT |= _FAMILIES_EQUIVALENT | _CLI_EQUIVALENT | _EXPLORERS_EQUIVALENT


def _without_device(line: str) -> str:
    return re.sub(r"\s*device=[^,)]*,?", "", line[1:]).replace(", )", ")").replace(",)", ")").replace("(,", "(").strip()


def _equivalent(name: str, diff: str) -> str | None:
    """Why a surviving mutant is equivalent, or None when no reason is recorded."""
    if name in EQUIVALENT:
        return EQUIVALENT[name]
    removed = [line for line in diff.splitlines() if line.startswith("-")]
    added = [line for line in diff.splitlines() if line.startswith("+")]
    if len(removed) == len(added) == 1 and "device=" in removed[0]:
        if _without_device(removed[0]) == _without_device(added[0]):
            return _CPU_ONLY
    return None


def _mark_not_mutated(path: Path, functions: list[str]) -> None:
    """Put mutmut's ``# pragma: no mutate block`` on the ``def`` line of each named function."""
    text = path.read_text(encoding="utf-8")
    for name in functions:
        pattern = re.compile(rf"^(\s*def {name}\(.*\)(?:\s*->\s*[^:]+)?:)[ \t]*$", re.M)  # return annotation too
        text, found = pattern.subn(r"\1  # pragma: no mutate block", text)
        if found != 1:
            raise SystemExit(f"{path.name}: expected one one-line `def {name}(...):`, found {found}")
    path.write_text(text, encoding="utf-8")


def _scratch(module: str) -> Path:
    """A copy of what the tests need, with mutmut's configuration for this module."""
    files, tests = MODULES[module]
    scratch = WORK / module
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for folder in ("src", "tests", "scripts", "notebooks", "benchmarks"):
        shutil.copytree(ROOT / folder, scratch / folder, ignore=ignore)
    for name in ("_toc.yml", "_config.yml", "zh/_toc.yml"):  # conftest reads both editions' pages
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, scratch / name)
    for file in files:
        if file in NOT_MUTATED:
            _mark_not_mutated(scratch / file, NOT_MUTATED[file])
    config = {
        "source_paths": ["src"],
        "only_mutate": files,
        # mutmut runs the tests inside mutants/: what conftest and the tests read from the root
        "also_copy": ["scripts", "notebooks", "benchmarks", "_toc.yml", "_config.yml", "zh"],
        "do_not_mutate_patterns": PROSE,
        "pytest_add_cli_args_test_selection": [*tests, "-m", "not book and not browser"],
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        # fork from the process that ran the tests once: flex attention's first call in a process
        # costs tens of seconds, and the mutants' forks inherit it warm. One torch thread each.
        "process_isolation": "fork",
    }
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject += "\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())
    (scratch / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    # made now, so that Python, started with it on PYTHONPATH, does not cache it as missing and
    # import the checkout's attnviz instead of the mutated copy mutmut writes there
    (scratch / "mutants" / "src").mkdir(parents=True)
    return scratch


def _statuses(scratch: Path, files: list[str]) -> dict[str, str]:
    """mutant name -> mutmut's verdict, read from its .meta files."""
    from mutmut.stats import status_by_exit_code

    verdicts = {}
    for file in files:
        meta = json.loads((scratch / "mutants" / (file + ".meta")).read_text(encoding="utf-8"))
        for name, exit_code in meta["exit_code_by_key"].items():
            verdicts[name] = status_by_exit_code[exit_code]
    return verdicts


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant

diffs = {}
for name in json.load(sys.stdin):
    lines = get_diff_for_mutant(name).splitlines()
    diffs[name] = "\\n".join(l for l in lines if l[:1] in "+-" and not l.startswith(("+++", "---")))
print(json.dumps(diffs))
"""


def _diffs(scratch: Path, names: list[str], env: dict) -> dict[str, str]:
    """Each mutant's change as -/+ lines, from mutmut (in one process: its config is read from cwd)."""
    shown = subprocess.run(
        [sys.executable, "-c", _DIFFS], cwd=scratch, env=env, input=json.dumps(names), capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise SystemExit(f"could not read the mutants' diffs: {shown.stderr[-2000:]}")
    return json.loads(shown.stdout)


def run(module: str, max_children: int) -> dict:
    files, tests = MODULES[module]
    scratch = _scratch(module)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        # mutmut runs pytest several times in one process: transformers' log handler, made on the
        # first run, would write its warnings to that run's closed capture stream on the next
        "TRANSFORMERS_VERBOSITY": "error",
        # subprocesses the tests start (the attnviz script, python -c) import the mutated copy too
        "PYTHONPATH": str(scratch / "mutants" / "src"),
    }
    load_before = os.getloadavg()
    start = time.monotonic()
    log = WORK / f"{module}.log"
    with log.open("w", encoding="utf-8") as out:
        command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
        code = subprocess.run(command, cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"mutmut failed on {module} (exit {code}); see {log.relative_to(ROOT)}")
    verdicts = _statuses(scratch, files)
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    lost = sorted(name for name, verdict in verdicts.items() if verdict not in ("killed", "timeout"))
    diffs = _diffs(scratch, lost, env)
    survivors = [
        {"mutant": name, "verdict": verdicts[name], "diff": diffs[name], "equivalent": _equivalent(name, diffs[name])}
        for name in lost
    ]
    killed, timeout = counts.get("killed", 0), counts.get("timeout", 0)
    entry = {
        "files": files,
        "tests": tests,
        "mutants": len(verdicts),
        "killed": killed,
        "survived": counts.get("survived", 0),
        "timeout": timeout,
        # "no tests": mutants in functions none of the module's tests reach (counted as not killed)
        "other": {k: v for k, v in counts.items() if k not in ("killed", "survived", "timeout")},
        "seconds": round(seconds),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
        "survivors": survivors,
    }
    # a timeout counts as killed: the mutant made the tests hang, which a run notices
    _counts(entry)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=list(MODULES), help="default: every module")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument(
        "--reasons-only", action="store_true", help="re-read the recorded reasons into mutation.json, run nothing"
    )
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {"modules": {}}
    if args.reasons_only:
        return _reread_reasons(results)
    unexplained = []
    for module in args.module or list(MODULES):
        print(f"mutation testing {module} ...", flush=True)
        entry = run(module, args.max_children)
        entry["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        results["modules"][module] = entry
        results["tool"] = f"mutmut {_version('mutmut')}"
        results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        lost = [s["mutant"] for s in entry["survivors"] if s["equivalent"] is None]
        unexplained += lost
        print(
            f"  {module}: {entry['mutants']} mutants, {entry['killed']} killed, {entry['survived']} survived, "
            f"{entry['timeout']} timeout, {entry['equivalent']} equivalent, "
            f"{entry['killed_of_non_equivalent']:.1%} of the others killed, {entry['seconds']} s "
            f"(load {entry['load_average_1min']['before']} -> {entry['load_average_1min']['after']})",
            flush=True,
        )
        for name in lost:
            print(f"  survived, no reason recorded: {name}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if unexplained else 0


def _counts(entry: dict) -> None:
    """The equivalent count and the kill rate of one module's entry, from its survivors."""
    entry["equivalent"] = sum(s["equivalent"] is not None for s in entry["survivors"])
    not_equivalent = entry["mutants"] - entry["equivalent"]
    killed = entry["killed"] + entry["timeout"]
    entry["killed_of_non_equivalent"] = round(killed / not_equivalent, 4) if not_equivalent else 1.0


def _reread_reasons(results: dict) -> int:
    """Apply the reasons recorded here to the survivors of the last run, without running mutmut."""
    unexplained = 0
    for module, entry in results["modules"].items():
        for survivor in entry["survivors"]:
            survivor["equivalent"] = _equivalent(survivor["mutant"], survivor["diff"])
            unexplained += survivor["equivalent"] is None
        _counts(entry)
        print(
            f"  {module}: {entry['equivalent']} equivalent, "
            f"{entry['killed_of_non_equivalent']:.1%} of the others killed"
        )
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}; {unexplained} survivor(s) without a reason")
    return 1 if unexplained else 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
