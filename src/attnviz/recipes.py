"""The recipe zoo: published ways to make a decoder attend both ways, measured cell by cell.

Chapter 10 (``notebooks/10_recipes_in_the_wild.ipynb``) explains the recipes and reads the matrix
that ``scripts/recipes.py`` writes to ``book/data/recipes.json``: for every recipe, transformers
release, attention backend, ``use_cache`` setting and batch shape, one row saying whether the
model attends to the future, whether it uses positions, whether padding stays masked, or which
error the recipe's own code raised.

The probes are the ones of ``attnviz.probes`` (change the last input; permute the inputs), extended
to padded batches, to calls with a cache, and to models that are not Llama backbones (Gemma,
ModernBERT, a GritLM wrapper fed with text). This module must import on every transformers release
the matrix covers (4.40 on), so it imports none of the attnviz modules that name newer classes
(``attnviz.models``, ``attnviz.patch``, ``attnviz.probes``) at import time, and each recipe's own
code only inside that recipe's builder.
"""

import contextlib
import io
import string
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

# A difference counts only above this, relative to the size of the outputs (attnviz.probes uses
# the same rule): float rounding gives ~1e-7, a real effect in a random tiny model ~1e-1.
RTOL = 1e-4
SEQ_LEN = 8  # batch 1: one sequence of 8; batch 2: that one and a second of 5 real tokens + 3 padding
SHORT_LEN = 5
EXTRA = 2  # the padding probe lengthens the first row by this many tokens: the second gets more padding
VOCAB = 64
PAD_ID = 0
FIRST_ID = 4  # probe tokens are drawn from [FIRST_ID, VOCAB): never the padding token
BACKENDS = ("eager", "sdpa", "flex_attention")
ROW_KEYS = (
    "recipe",
    "source",
    "transformers",
    "backend",
    "use_cache",
    "batch",
    "attends_to_future",
    "uses_positions",
    "padding_masked",
    "error",
)


@dataclass(frozen=True)
class Recipe:
    """One published way to make a model bidirectional, and how to build and call it.

    Attributes:
        name: the row name in recipes.json (``seed`` is the seed's patch).
        how: one sentence: how the recipe reaches the attention kernel.
        source: where its code comes from: ``pypi:NAME==VERSION`` (installed into a throw-away
            environment), ``transformers`` (the release under test) or ``attnviz:PATH``.
        licence: the licence of that code.
        packages: pip requirements installed with --no-deps into a folder of their own.
        supported: the lowest and highest transformers release the recipe's own code targets
            (None: open). ``scripts/recipes.py`` runs it there and on the first release outside.
        outside_below: also run the release just below ``supported[0]`` (False where the feature
            simply does not exist before, e.g. a model class transformers added).
        feed: "embeds" (inputs_embeds), "ids" (input_ids) or "text" (strings through a tokenizer).
        has_cache: whether the model takes ``use_cache`` (an encoder does not).
        quote: (module, attribute path, start, stop) of the lines that make it bidirectional.
    """

    name: str
    how: str
    source: str
    licence: str
    build: Callable = field(repr=False, compare=False)
    packages: tuple[str, ...] = ()
    supported: tuple[str | None, str | None] = (None, None)
    outside_below: bool = True
    feed: str = "embeds"
    has_cache: bool = True
    quote: tuple[str, str, str | None, str | None] | None = None
    own_files: tuple[str, ...] = ()  # attnviz files that are the recipe's own code (their errors are verdicts)


class HarnessError(RuntimeError):
    """The measuring code or its environment failed: never a verdict about a recipe."""


# --------------------------------------------------------------------------------------------
# Tiny configs, written with the fields every release since 4.40 accepts


def _llama_fields(backend: str) -> dict:
    return dict(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        initializer_range=0.1,
        pad_token_id=PAD_ID,
        attn_implementation=backend,
    )


def llama_config(backend: str):
    from transformers import LlamaConfig

    return LlamaConfig(**_llama_fields(backend))


def _seeded(build: Callable):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


# --------------------------------------------------------------------------------------------
# A built recipe: a model plus the call the recipe makes


@dataclass
class Built:
    """A recipe's model, ready to run: ``run(ids, mask, use_cache) -> (batch, seq, hidden)`` outputs."""

    run: Callable
    hidden_size: int


def _embedding_table(hidden_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(VOCAB, hidden_size, generator=generator)


def _backbone_runner(model, hidden_size: int, feed: str, extra: dict | None = None) -> Built:
    """Call ``model`` the way a backbone is called: inputs_embeds (or input_ids) and a mask."""
    table = _embedding_table(hidden_size)
    extra = extra or {}

    def run(ids, mask, use_cache):
        kwargs = dict(extra)
        if use_cache is not None:
            kwargs["use_cache"] = use_cache
        if feed == "embeds":
            kwargs["inputs_embeds"] = table[ids]
        else:
            kwargs["input_ids"] = ids
        with torch.no_grad():
            return model(attention_mask=mask, **kwargs)[0].float()

    return Built(run, hidden_size)


def build_control(backend: str) -> Built:
    """A plain LlamaModel: must come out causal, position-using, padding masked, everywhere."""
    from transformers import LlamaModel

    return _backbone_runner(_seeded(lambda: LlamaModel(llama_config(backend))).eval(), 128, "embeds")


def _build_seed(backend: str) -> Built:
    from attnviz.state import seed_backbone

    return _backbone_runner(_seeded(lambda: seed_backbone(llama_config(backend))).eval(), 128, "embeds")


def _build_state_later(backend: str) -> Built:
    from transformers import LlamaModel

    from attnviz.state import state_later_patch

    model = _seeded(lambda: state_later_patch(LlamaModel(llama_config(backend)).eval()))
    return _backbone_runner(model, 128, "embeds")


def _build_attnviz(backend: str) -> Built:
    from transformers import LlamaModel

    from attnviz.patch import bidirectional, no_rope

    model = _seeded(lambda: LlamaModel(llama_config(backend))).eval()
    bidirectional(model)
    no_rope(model)
    return _backbone_runner(model, 128, "embeds")


def _build_native(backend: str) -> Built:
    from transformers import LlamaModel

    model = _seeded(lambda: LlamaModel(llama_config(backend))).eval()
    return _backbone_runner(model, 128, "embeds", extra={"is_causal": False})


def _build_llm2vec(backend: str) -> Built:
    from llm2vec.models import LlamaBiModel

    return _backbone_runner(_seeded(lambda: LlamaBiModel(llama_config(backend))).eval(), 128, "embeds")


def _load_state_utils():
    """STATE's ``state/tx/models/utils.py`` from the installed arc-state, loaded as the file it is.

    ``import state.tx.models`` would run the package's ``__init__``, which imports the whole
    training stack (lightning, scanpy, ...); the bidirectional model lives in this one file,
    which imports only torch and transformers.
    """
    import importlib.util
    from importlib import metadata

    files = [f for f in metadata.files("arc-state") if str(f).endswith("state/tx/models/utils.py")]
    if not files:
        raise HarnessError("arc-state is installed without state/tx/models/utils.py")
    path = Path(files[0].locate())
    spec = importlib.util.spec_from_file_location("arc_state_tx_models_utils", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # inspect (attnviz.quote) finds the source through sys.modules
    spec.loader.exec_module(module)
    return module


def _build_arc_state(backend: str) -> Built:
    utils = _load_state_utils()
    model = _seeded(lambda: utils.LlamaBidirectionalModel(llama_config(backend))).eval()
    return _backbone_runner(model, 128, "embeds")


def _char_tokenizer(folder: Path):
    """A character-level fast tokenizer over VOCAB symbols, saved in ``folder`` (nothing downloaded)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = ["<pad>", "<s>", "</s>", "<unk>"] + list(string.ascii_letters + string.digits)[: VOCAB - 4]
    vocab = {s: i for i, s in enumerate(symbols)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],  # as Mistral's and Llama's tokenizers
    )
    tokenizer.save_pretrained(folder)
    return symbols


def _build_gritlm(backend: str, attn: str = "bbcc") -> Built:
    from gritlm import GritLM
    from transformers import MistralConfig, MistralForCausalLM

    fields = _llama_fields(backend)
    fields.pop("head_dim")  # 128 / 4 = 32 anyway; old MistralConfig has no head_dim
    config = MistralConfig(sliding_window=None, **fields)
    with tempfile.TemporaryDirectory(prefix="attnviz-gritlm-") as folder:
        symbols = _char_tokenizer(Path(folder))
        _seeded(lambda: MistralForCausalLM(config)).save_pretrained(folder)
        with contextlib.redirect_stdout(io.StringIO()):  # GritLM prints a banner
            grit = GritLM(folder, mode="unified", pooling_method="mean", attn=attn, attn_implementation=backend)
    backbone = grit.model.model
    captured = []
    backbone.register_forward_hook(lambda module, args, output: captured.append(output[0]))

    def run(ids, mask, use_cache):
        # GritLM tokenizes text itself (right padding); rows of ids become strings of characters
        keep = torch.ones_like(ids) if mask is None else mask
        texts = []
        for row, row_keep in zip(ids.tolist(), keep.tolist(), strict=True):
            texts.append("".join(symbols[i] for i, k in zip(row, row_keep, strict=True) if k))
        grit.model.config.use_cache = bool(use_cache)  # encode() passes use_cache only with get_cache=True
        captured.clear()
        grit.encode(texts, convert_to_tensor=True, get_cache=bool(use_cache))
        (hidden,) = captured
        return hidden.float()

    return Built(run, config.hidden_size)


def _build_gritlm_causal(backend: str) -> Built:
    return _build_gritlm(backend, attn="cccc")


def _build_gemma3(backend: str) -> Built:
    from transformers import Gemma3TextConfig, Gemma3TextModel

    fields = _llama_fields(backend)
    config = Gemma3TextConfig(use_bidirectional_attention=True, sliding_window=512, **fields)
    model = _seeded(lambda: Gemma3TextModel(config)).eval()
    return _backbone_runner(model, 128, "embeds")


def _build_gemma4(backend: str) -> Built:
    from transformers import Gemma4TextConfig, Gemma4TextModel

    fields = _llama_fields(backend)
    config = Gemma4TextConfig(
        use_bidirectional_attention="all",
        sliding_window=512,
        vocab_size_per_layer_input=VOCAB,
        hidden_size_per_layer_input=32,
        global_head_dim=32,
        **fields,
    )
    model = _seeded(lambda: Gemma4TextModel(config)).eval()
    return _backbone_runner(model, 128, "ids")  # Gemma 4 computes per-layer inputs from the ids


def _build_modernbert(backend: str) -> Built:
    from transformers import ModernBertConfig, ModernBertModel

    config = ModernBertConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        initializer_range=0.1,
        pad_token_id=PAD_ID,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        attn_implementation=backend,
    )
    model = _seeded(lambda: ModernBertModel(config)).eval()
    return _backbone_runner(model, 128, "ids")


STATE_URL = "https://github.com/ArcInstitute/state"

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "seed",
            "overrides LlamaModel._update_causal_mask to return None and passes is_causal=False to forward; "
            "cos = 1, sin = 0 rotary",
            "attnviz:src/attnviz/state.py",
            "Apache-2.0 (attnviz's rewrite of the seed listing)",
            _build_seed,
            quote=("attnviz.state", "SeedBidirectionalModel", "def _update_causal_mask", "return None"),
            own_files=("state.py",),
        ),
        Recipe(
            "state_later",
            "config.is_causal = False, every layer's self_attn.is_causal = False, and an all-ones 4D mask "
            "when the caller gives none",
            "attnviz:src/attnviz/state.py",
            "Apache-2.0 (attnviz's rewrite of STATE's later patch)",
            _build_state_later,
            quote=("attnviz.state", "state_later_patch", "model.config.is_causal = False", None),
            own_files=("state.py",),
        ),
        Recipe(
            "arc-state-0.9.1",
            "STATE's published LlamaBidirectionalModel: the seed's override and is_causal=False keyword",
            "pypi:arc-state==0.9.1",
            "CC BY-NC-SA 4.0",
            _build_arc_state,
            packages=("arc-state==0.9.1",),
            supported=("4.52.3", None),
            quote=("arc_state_tx_models_utils", "LlamaBidirectionalModel", "def _update_causal_mask", None),
        ),
        Recipe(
            "arc-state-0.11.1",
            "STATE's later LlamaBidirectionalModel: the override, plus config.is_causal = False, layer "
            "is_causal = False and an all-ones 4D mask",
            "pypi:arc-state==0.11.1",
            "CC BY-NC-SA 4.0",
            _build_arc_state,
            packages=("arc-state==0.11.1",),
            supported=("4.52.3", None),
            quote=("arc_state_tx_models_utils", "LlamaBidirectionalModel", "self.config.is_causal = False", None),
        ),
        Recipe(
            "llm2vec",
            "LlamaBiModel: attention classes with is_causal = False and an _update_causal_mask override "
            "that builds an all-zeros (no causal) mask",
            "pypi:llm2vec==0.2.3",
            "MIT",
            _build_llm2vec,
            packages=("llm2vec==0.2.3", "peft==0.12.0", "accelerate==0.33.0", "psutil==6.0.0"),
            supported=("4.43.1", "4.44.2"),
            quote=(
                "llm2vec.models.bidirectional_llama",
                "LlamaBiModel._update_causal_mask",
                "causal_mask = torch.zeros",
                "#     causal_mask = torch.triu",
            ),
        ),
        Recipe(
            "llm2vec-0.1.6",
            "the same LlamaBiModel before McGill-NLP/llm2vec#74 was fixed: for sdpa it returns no mask "
            "when it can, and sdpa then runs causal",
            "pypi:llm2vec==0.1.6",
            "MIT",
            _build_llm2vec,
            packages=("llm2vec==0.1.6", "peft==0.10.0", "accelerate==0.29.3", "psutil==5.9.8"),
            supported=("4.39.1", "4.40.2"),
            quote=(
                "llm2vec.models.bidirectional_llama",
                "LlamaBiModel._update_causal_mask",
                "_ignore_causal_mask_sdpa",
                "return None",
            ),
        ),
        Recipe(
            "gritlm",
            "GritLM.encode adds is_causal=False to the backbone call (attn='bbcc'); the model must honour it",
            "pypi:gritlm==1.0.2",
            "Apache-2.0",
            _build_gritlm,
            packages=("gritlm==1.0.2",),
            supported=("4.37.2", None),
            feed="text",
            quote=("gritlm.gritlm", "GritLM.encode", "if (self.attn is not None)", 'inputs["is_causal"] = False'),
        ),
        Recipe(
            "gritlm-cccc",
            "GritLM.encode without the is_causal line (attn='cccc'), what ContextualAI/gritlm#15 did by hand",
            "pypi:gritlm==1.0.2",
            "Apache-2.0",
            _build_gritlm_causal,
            packages=("gritlm==1.0.2",),
            supported=("4.37.2", None),
            feed="text",
        ),
        Recipe(
            "native",
            "transformers' own is_causal=False keyword to the backbone's forward",
            "transformers",
            "Apache-2.0",
            _build_native,
            supported=("5.2.0", None),
        ),
        Recipe(
            "attnviz",
            "attnviz.bidirectional (per instance: a forward pre-hook passing is_causal=False, and a private "
            "config copy with is_causal=False) + attnviz.no_rope",
            "attnviz:src/attnviz/patch.py",
            "Apache-2.0",
            _build_attnviz,
            supported=("5.2.0", None),
            quote=("attnviz.patch", "bidirectional_call", 'kwargs["use_cache"] = False', 'kwargs["is_causal"] = False'),
            own_files=("patch.py",),
        ),
        Recipe(
            "gemma3-flag",
            "Gemma3TextConfig(use_bidirectional_attention=True): the attention modules and the mask builder "
            "read the flag",
            "transformers",
            "Apache-2.0",
            _build_gemma3,
            supported=("4.56.0", None),
        ),
        Recipe(
            "gemma4-flag",
            'Gemma4TextConfig(use_bidirectional_attention="all")',
            "transformers",
            "Apache-2.0",
            _build_gemma4,
            supported=("5.5.0", None),
            outside_below=False,
            feed="ids",
        ),
        Recipe(
            "modernbert",
            "ModernBertModel: an encoder, bidirectional by design, with RoPE (calibration)",
            "transformers",
            "Apache-2.0",
            _build_modernbert,
            supported=("4.48.0", None),
            outside_below=False,
            feed="ids",
            has_cache=False,
        ),
    ]
}


# --------------------------------------------------------------------------------------------
# The probes


def _tokens(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_ID, VOCAB, (n,), generator=generator)


def _other_token(token: int) -> int:
    return FIRST_ID + (token - FIRST_ID + 7) % (VOCAB - FIRST_ID)


def _derangement(n: int, seed: int) -> torch.Tensor:
    """A fixed random order in which no position keeps its place."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        if not (order == torch.arange(n)).any():
            return order


def _batch(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad the rows with PAD_ID: (ids, mask), each (batch, longest)."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def _call(built: Built, rows: list[torch.Tensor], use_cache, batch: int) -> torch.Tensor:
    ids, mask = _batch(rows)
    # batch 1 is one sequence called without a mask, as a single sequence usually is
    return built.run(ids, mask if batch > 1 else None, use_cache)


def probe_cell(built: Built, use_cache, batch: int) -> dict:
    """Measure one (model, use_cache, batch) cell: the three verdicts and the effects behind them.

    Batch 1 runs one sequence of ``SEQ_LEN`` inputs with no attention mask. Batch 2 adds a second,
    shorter row, right-padded, with the padding mask. The probes:

    - future: change the last real input of every row; did any earlier output of that row move?
    - positions: permute each row's real inputs (padding stays put); do the outputs do more than permute?
    - padding (batch 2 only): lengthen the first row, so the second gets more padding; did the
      second row's real outputs move? If the padding were attended to, they would.
    """
    rows = [_tokens(SEQ_LEN, 0)] if batch == 1 else [_tokens(SEQ_LEN, 0), _tokens(SHORT_LEN, 1)]
    base = _call(built, rows, use_cache, batch)
    scale = max(1.0, base.abs().max().item())
    threshold = RTOL * scale

    changed = [r.clone() for r in rows]
    for r in changed:
        r[-1] = _other_token(int(r[-1]))
    moved = _call(built, changed, use_cache, batch)
    future_effect = max((moved[i, : len(r) - 1] - base[i, : len(r) - 1]).abs().max().item() for i, r in enumerate(rows))

    orders = [_derangement(len(r), seed=len(r)) for r in rows]
    permuted = _call(built, [r[o] for r, o in zip(rows, orders, strict=True)], use_cache, batch)
    permutation_effect = max(
        (permuted[i, : len(r)] - base[i, : len(r)][orders[i]]).abs().max().item() for i, r in enumerate(rows)
    )

    padding_effect = None
    if batch > 1:
        longer = [torch.cat([rows[0], _tokens(EXTRA, 2)]), rows[1]]
        padded_more = _call(built, longer, use_cache, batch)
        padding_effect = (padded_more[1, :SHORT_LEN] - base[1, :SHORT_LEN]).abs().max().item()
    return {
        "attends_to_future": future_effect > threshold,
        "uses_positions": permutation_effect > threshold,
        "padding_masked": None if padding_effect is None else padding_effect <= threshold,
        "effects": {"future": future_effect, "permutation": permutation_effect, "padding": padding_effect},
        "threshold": threshold,
    }


# --------------------------------------------------------------------------------------------
# Errors: the recipe's, or ours?

_HARNESS_DIR = Path(__file__).resolve().parent


def recipe_error(error: BaseException, recipe: Recipe) -> str:
    """The row's ``error`` text for an exception the recipe's own code raised.

    Raises ``HarnessError`` when the innermost frame is attnviz's own code (this module, or an attnviz
    module that is not the recipe's): a broken harness or environment must never pass as a verdict.
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")]
    innermost = Path(frames[-1].filename).resolve() if frames else None
    if innermost is not None and innermost.parent == _HARNESS_DIR and innermost.name not in recipe.own_files:
        raise HarnessError(
            f"{recipe.name}: attnviz's own code failed ({innermost.name}, line {frames[-1].lineno}): "
            f"{type(error).__name__}: {error}"
        ) from error
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}"[:240]


# --------------------------------------------------------------------------------------------
# Rows for the transformers installed here


def backends_here() -> list[str]:
    """eager and sdpa, plus flex_attention where this transformers has it."""
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:
        return ["eager", "sdpa"]
    return ["eager", "sdpa"] + (["flex_attention"] if "flex_attention" in ALL_ATTENTION_FUNCTIONS else [])


def _row(recipe: Recipe, backend: str, use_cache, batch: int) -> dict:
    import transformers

    return {
        "recipe": recipe.name,
        "source": recipe.source
        if recipe.source != "transformers"
        else f"pypi:transformers=={transformers.__version__}",
        "transformers": transformers.__version__,
        "backend": backend,
        "use_cache": use_cache,
        "batch": batch,
        "attends_to_future": None,
        "uses_positions": None,
        "padding_masked": None,
        "error": None,
    }


def _cells(recipe: Recipe):
    for use_cache in (False, True) if recipe.has_cache else (None,):
        for batch in (1, 2):
            yield use_cache, batch


def check_control(backends: list[str]) -> list[str]:
    """Run the plain-LlamaModel control on each backend; return the backends it runs on.

    Raises ``HarnessError`` if eager or sdpa fails or gives any verdict but causal / position-using /
    padding masked: then the environment, not a recipe, is broken. A flex backend that cannot run
    here, or that is not causal even for the plain model (old transformers with this torch on CPU),
    is left out of that release instead.
    """
    usable = []
    for backend in backends:
        try:
            built = build_control(backend)
            cells = [probe_cell(built, use_cache, batch) for use_cache in (False, True) for batch in (1, 2)]
        except Exception as error:
            if backend == "flex_attention":
                print(f"  flex_attention does not run here ({type(error).__name__}); left out", file=sys.stderr)
                continue
            raise HarnessError(f"the plain LlamaModel control fails on {backend}: {error!r}") from error
        wrong = [
            cell
            for cell in cells
            if (cell["attends_to_future"], cell["uses_positions"], cell["padding_masked"])
            not in ((False, True, None), (False, True, True))
        ]
        if wrong and backend == "flex_attention":
            # measured on 4.52.4 with torch 2.13: uncompiled flex ignores the causal block mask even for
            # a plain LlamaModel, so no recipe's flex verdict could be trusted there
            print(f"  flex_attention: the plain LlamaModel is not causal here; left out: {wrong[0]}", file=sys.stderr)
            continue
        if wrong:
            raise HarnessError(f"the plain LlamaModel control is not causal on {backend}: {wrong[0]}")
        usable.append(backend)
    return usable


def measure(recipe: Recipe, backends: list[str]) -> list[dict]:
    """Every cell of one recipe on the transformers installed here."""
    rows = []
    for backend in backends:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter differs by release
            try:
                built = recipe.build(backend)
            except HarnessError:
                raise
            except Exception as error:  # the recipe cannot even be built here: every cell says why
                message = recipe_error(error, recipe)
                for use_cache, batch in _cells(recipe):
                    rows.append({**_row(recipe, backend, use_cache, batch), "error": message})
                continue
            for use_cache, batch in _cells(recipe):
                row = _row(recipe, backend, use_cache, batch)
                try:
                    cell = probe_cell(built, use_cache, batch)
                except HarnessError:
                    raise
                except Exception as error:
                    row["error"] = recipe_error(error, recipe)
                else:
                    row.update({k: cell[k] for k in ("attends_to_future", "uses_positions", "padding_masked")})
                rows.append(row)
    return rows


def quote_recipe(recipe: Recipe) -> dict | None:
    """The lines of the recipe's installed code that make it bidirectional, via ``attnviz.quote``."""
    if recipe.quote is None:
        return None
    import importlib

    from attnviz.source import quote

    module_name, attribute, start, stop = recipe.quote
    if module_name == "arc_state_tx_models_utils":
        module = _load_state_utils()
    else:
        module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    found = quote(obj, start=start, stop=stop)
    if recipe.packages:  # a PyPI package: name it and its version, and its path as in its repository
        name, version = recipe.packages[0].split("==")
        found.package, found.version = name, version
        found.path = "state/tx/models/utils.py" if name == "arc-state" else found.path.removeprefix("src/")
    return {"header": found.header, "code": found.code}


def run_here(names: list[str]) -> dict:
    """Every cell of the named recipes on the transformers installed here, and their quotes.

    Returns {transformers, backends, rows, quotes}. Run it with TORCHDYNAMO_DISABLE=1 in the
    environment (``python -m attnviz.recipes NAME ...`` or ``rows_in_subprocess``): flex_attention
    then runs uncompiled, with the same masks, in seconds instead of minutes on a CPU.
    """
    import transformers

    backends = check_control(backends_here())
    rows, quotes = [], {}
    for name in names:
        recipe = RECIPES[name]
        found = measure(recipe, backends)
        rows.extend(found)
        if not any(r["error"] for r in found if r["backend"] == "eager"):
            quotes[name] = quote_recipe(recipe)
    return {"transformers": transformers.__version__, "backends": backends, "rows": rows, "quotes": quotes}


def rows_in_subprocess(names: list[str], python: str | None = None, env: dict | None = None) -> dict:
    """``run_here(names)`` in a fresh interpreter (default: this one) with TORCHDYNAMO_DISABLE=1.

    Chapter 10 re-checks the pinned release's cells this way; scripts/recipe_matrix.py runs it
    with each release's interpreter. Raises ``HarnessError`` with the child's stderr if it fails.
    """
    import json
    import os
    import subprocess

    env = {**os.environ, **(env or {}), "TORCHDYNAMO_DISABLE": "1"}
    done = subprocess.run(
        [python or sys.executable, "-m", "attnviz.recipes", *names], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise HarnessError(f"measuring {names} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Reading the matrix (chapter 10)


def verdict(row: dict) -> str:
    """What one row says, in a word: bidirectional, padding leaks, causal or error."""
    if row["error"]:
        return "error"
    if not row["attends_to_future"]:
        return "causal"
    return "padding leaks" if row["padding_masked"] is False else "bidirectional"


def source_url(source: str) -> str | None:
    """A link for a row's ``source``: the PyPI page of that exact version; None for attnviz's own files."""
    if source.startswith("pypi:"):
        name, version = source[len("pypi:") :].split("==")
        return f"https://pypi.org/project/{name}/{version}/"
    return None


def _describe(cells: list[dict], subset: list[dict]) -> str:
    """The shortest description of ``subset`` among ``cells``: 'sdpa', 'batch 1', 'sdpa, batch 1', ..."""
    names = {
        "backend": lambda r: {"flex_attention": "flex"}.get(r["backend"], r["backend"]),
        "batch": lambda r: f"batch {r['batch']}",
        "use_cache": lambda r: "n/a" if r["use_cache"] is None else ("cache on" if r["use_cache"] else "cache off"),
    }
    wanted = {id(r) for r in subset}
    for keys in (("backend",), ("batch",), ("use_cache",), ("backend", "batch"), ("backend", "use_cache")):
        values = {tuple(names[k](r) for k in keys) for r in subset}
        covered = [r for r in cells if tuple(names[k](r) for k in keys) in values]
        if {id(r) for r in covered} == wanted:
            return "; ".join(", ".join(v) for v in sorted(values))
    return "; ".join(sorted({", ".join(names[k](r) for k in names) for r in subset}))


def _main_verdict(cells: list[dict]) -> tuple[str, dict[str, list[dict]]]:
    """The verdict most of ``cells`` get (the first seen on a tie), and the cells by verdict."""
    by: dict[str, list[dict]] = {}
    for row in cells:
        by.setdefault(verdict(row), []).append(row)
    return max(by, key=lambda v: len(by[v])), by


def summarize(cells: list[dict]) -> str:
    """One (recipe, release) block of cells in a few words, e.g. 'bidirectional; causal: sdpa, batch 1'."""
    main, by = _main_verdict(cells)
    parts = [main if len(by) == 1 else f"{main} (rest)"]
    for name, subset in sorted(by.items()):
        if name != main:
            parts.append(f"{name}: {_describe(cells, subset)}")
    errors = sorted({r["error"].split(":")[0] for r in cells if r["error"]})
    text = "; ".join(parts)
    return text + (f" ({', '.join(errors)})" if errors else "")


def _note(cells: list[dict]) -> str:
    """`summarize` as a note under the summary table: 'causal with sdpa, batch 1; bidirectional otherwise'."""
    main, by = _main_verdict(cells)
    errors = sorted({r["error"].split(":")[0] for r in cells if r["error"]})
    raised = f"raises {' or '.join(errors)}" if errors else "raises"
    words = lambda name: raised if name == "error" else name  # noqa: E731
    if len(by) == 1:
        return words(main)
    parts = [f"{words(name)} with {_describe(cells, subset)}" for name, subset in sorted(by.items()) if name != main]
    return "; ".join(parts) + f"; {words(main)} otherwise"


# The summary table's own style, shipped with it so it reads the same in Jupyter and on the site:
# release headers written upwards, narrow centred cells, the recipe names kept in view (sticky)
# while a phone scrolls the releases under them.
_SUMMARY_CSS = """
.attnviz-table-scroll { overflow-x: auto; max-width: 100%; }
table.attnviz-recipes { border-collapse: collapse; font-size: 0.8rem; line-height: 1.2; margin: 0; }
table.attnviz-recipes th, table.attnviz-recipes td { padding: 0.2rem 0.25rem; border: 1px solid #fff; }
table.attnviz-recipes thead th { vertical-align: bottom; font-weight: 600; }
table.attnviz-recipes thead th span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
table.attnviz-recipes td { min-width: 1.9rem; text-align: center; font-weight: 700; white-space: nowrap; }
table.attnviz-recipes td.attnviz-not-run { background-color: #f2f2f2; }
table.attnviz-recipes sup { font-weight: 400; margin-left: 0.05rem; }
table.attnviz-recipes th[scope="row"] { position: sticky; left: 0; z-index: 1; text-align: left;
  white-space: nowrap; background-color: var(--pst-color-background, #fff); }
.attnviz-recipes-notes { font-size: 0.85rem; margin: 0.4rem 0 0; }
ol.attnviz-recipes-notes { padding-left: 1.6rem; margin-top: 0.1rem; }
"""

# The mark of a cell of the summary table: colour alone would not do for every reader.
VERDICT_MARKS = {"bidirectional": "✓", "padding leaks": "~", "causal": "✗", "error": "!"}


def summary_table(rows: list[dict], recipes: list[str] | None = None) -> str:
    """The matrix as a compact HTML table: a row per recipe, a column per release, and notes.

    Each cell is coloured and marked by the verdict most of its cells get (✓ bidirectional,
    ✗ causal, ~ padding leaks, ! error); a cell whose configurations disagree, or that raised, gets
    a note letter, and the notes under the table say which configurations differ (`summarize`).
    The recipe's name links to its published source. The whole table fits a desktop column (688
    px: the release headers are written upwards); on a phone it scrolls under the recipe names.
    """
    import html

    from packaging.version import Version

    recipes = list(dict.fromkeys(r["recipe"] for r in rows)) if recipes is None else recipes
    releases = sorted({r["transformers"] for r in rows}, key=Version)
    head = "".join(f'<th scope="col"><span>{v}</span></th>' for v in releases)
    lines = [
        f"<style>{_SUMMARY_CSS}</style>",
        '<div class="attnviz-table-scroll"><table class="attnviz-recipes">',
        f'<thead><tr><th scope="col">recipe</th>{head}</tr></thead><tbody>',
    ]
    notes: dict[str, str] = {}  # summary -> letter
    shown: set[str] = set()  # the marks the table uses: the legend names only those
    for name in recipes:
        mine = [r for r in rows if r["recipe"] == name]
        sources = sorted({r["source"] for r in mine})
        url = source_url(sources[0]) if len(sources) == 1 else None
        label = html.escape(name)
        if url:
            label = f'<a href="{url}" title="{html.escape(sources[0])}">{label}</a>'
        cells = []
        for version in releases:
            here = [r for r in mine if r["transformers"] == version]
            if not here:
                cells.append('<td class="attnviz-not-run" title="not run"></td>')
                continue
            main, _ = _main_verdict(here)
            shown.add(main)
            summary = summarize(here)
            note = ""
            if summary != main:
                letter = notes.setdefault(_note(here), "abcdefghijklmnopqrstuvwxyz"[len(notes) % 26])
                note = f"<sup>{letter}</sup>"
            text = "#fff" if main in ("causal", "error", "bidirectional") else "#000"
            cells.append(
                f'<td title="{html.escape(version)}: {html.escape(summary)}" '
                f'style="background-color: {VERDICT_COLORS[main]}; color: {text}">'
                f"{VERDICT_MARKS[main]}{note}</td>"
            )
        lines.append(f'<tr><th scope="row">{label}</th>{"".join(cells)}</tr>')
    lines.append("</tbody></table></div>")
    legend = ", ".join(f"{mark} {name}" for name, mark in VERDICT_MARKS.items() if name in shown)
    lines.append(
        f'<p class="attnviz-recipes-notes">{legend}; blank: not run. '
        "Where the cells of one release disagree, or the recipe raised:</p>"
    )
    lines.append('<ol class="attnviz-recipes-notes" type="a">')
    lines.extend(f"<li>{html.escape(summary)}</li>" for summary in notes)
    lines.append("</ol>")
    return "\n".join(lines)


def cells(rows: list[dict], recipe: str, transformers: str, **where) -> list[dict]:
    """The rows of one recipe on one release, optionally narrowed, e.g. ``backend="sdpa", batch=1``."""
    found = [r for r in rows if r["recipe"] == recipe and r["transformers"] == transformers]
    return [r for r in found if all(r[k] == v for k, v in where.items())]


if __name__ == "__main__":
    import json

    print(json.dumps(run_here(sys.argv[1:])))


# Colours of the recipe matrix (chapter 10): what a cell of book/data/recipes.json says.
VERDICT_COLORS = {
    "bidirectional": "#1a9850",  # attends to the future, padding masked
    "padding leaks": "#fdae61",  # attends to the future, but the padding is attended to as well
    "causal": "#d73027",  # does not attend to the future
    "error": "#404040",  # the recipe's own code raised
    "not run": "#f2f2f2",  # outside the recipe's range, or no such backend in that release
}


def recipe_matrix(rows: Sequence[dict], recipes: Sequence[str] | None = None, title: str | None = None):
    """Draw the recipe matrix as a green/red grid (chapter 10); return the Figure.

    One band per recipe (top: batch 1; bottom: batch 2 with padding), one block per transformers
    release; inside a block, one column per backend (eager, sdpa, flex) and ``use_cache``
    (off, on). A recipe without a cache (an encoder) fills both halves.

    Args:
        rows: rows of ``book/data/recipes.json``.
        recipes: the recipes to draw, top to bottom (default: in the order they first appear).
    """
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import to_rgb
    from packaging.version import Version

    from attnviz.plot import COLUMN, STYLE

    if not rows:
        raise ValueError("recipe_matrix needs rows: load book/data/recipes.json (scripts/recipe_matrix.py writes it).")
    recipes = list(dict.fromkeys(r["recipe"] for r in rows)) if recipes is None else list(recipes)
    releases = sorted({r["transformers"] for r in rows}, key=Version)
    backends = ("eager", "sdpa", "flex_attention")
    image = np.ones((2 * len(recipes), 6 * len(releases), 3)) * np.array(to_rgb(VERDICT_COLORS["not run"]))
    for row in rows:
        if row["recipe"] not in recipes:
            continue
        y = 2 * recipes.index(row["recipe"]) + (row["batch"] - 1)
        x0 = 6 * releases.index(row["transformers"]) + 2 * backends.index(row["backend"])
        caches = (0, 1) if row["use_cache"] is None else (int(row["use_cache"]),)
        for cache in caches:
            image[y, x0 + cache] = to_rgb(VERDICT_COLORS[verdict(row)])

    with matplotlib.rc_context(STYLE):
        fig = plt.figure(figsize=(COLUMN, 0.36 * len(recipes) + 2.3), layout="constrained")
        plt.close(fig)  # shown once, when a cell returns it
        _draw_matrix(fig, image, recipes, releases, title)
    return fig


def _draw_matrix(fig, image, recipes, releases, title):
    from matplotlib.patches import Patch

    ax = fig.subplots()
    ax.imshow(image, aspect="auto", interpolation="nearest")
    for x in range(6, 6 * len(releases), 6):
        ax.axvline(x - 0.5, color="white", linewidth=2.5)
    for x in range(2, 6 * len(releases), 2):
        ax.axvline(x - 0.5, color="white", linewidth=0.4)
    for y in range(2, 2 * len(recipes), 2):
        ax.axhline(y - 0.5, color="white", linewidth=2.5)
    ax.set_xticks([6 * i + 2.5 for i in range(len(releases))], releases, rotation=60, ha="right")
    ax.set_yticks([2 * i + 0.5 for i in range(len(recipes))], recipes)
    ax.tick_params(length=0)
    ax.set_xlabel("transformers release; in each block: eager | sdpa | flex, each cache off | on")
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = [Patch(facecolor=c, edgecolor="#999999", label=name) for name, c in VERDICT_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    ax.set_title(title or "Does the recipe attend to the future? (each band: batch 1 on top, batch 2 padded below)")
