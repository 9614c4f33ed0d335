"""The demo model in the page: its weights as a script for the JavaScript forward pass.

Chapter 9's kernel-free explorer runs the book's demo model in the reader's browser with
``static/demo_model.js`` (a forward pass written for this one Llama, no dependencies). This module
converts the shipped checkpoint (``model.safetensors``, ``config.json``, ``tokenizer.json``) at build
time into a second script that sets ``globalThis.attnvizDemoWeights``. A ``<script>`` tag loads it
both from the site's own origin and from a site opened from disk (``file://``), where ``fetch`` of a
local file is refused; nothing is committed twice and nothing comes from another origin.

Size: the 1.35 MB of float32 weights would take 1.8 MB as plain base64, over the page's budget
of 1.6 MB. They are stored losslessly instead: the float32 bytes split into four byte planes (the
exponent bytes then compress well), deflated (1.15 MB), then written as base85 (5 characters per 4
bytes, where base64 takes 4 per 3), about 1.44 MB with RoPE's tables. The browser inflates them
with its built-in ``DecompressionStream``; float16 would be smaller but could not give torch's
float32 numbers.

The torch side of the equality checks (``random_texts``, ``text_tokens``, ``reference_outputs``) is
here too, for ``tests/test_live_model.py`` and ``benchmarks/live_model.py``.
"""

import base64
import hashlib
import json
import re
import zlib
from pathlib import Path

import numpy as np

ENGINE_JS = Path(__file__).resolve().parent / "static" / "demo_model.js"
ENGINE_NAME = "attnviz-demo-model.js"
WEIGHTS_NAME = "attnviz-demo-weights.js"
WEIGHTS_FORMAT = "attnviz-demo-weights/2"  # the engine refuses any other


def _demo_dir() -> Path:
    from attnviz.demo import DEMO_DIR  # the one place that knows where the checkpoint lives

    return DEMO_DIR


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _engine_config(config: dict) -> dict:
    """The fields the JavaScript forward pass reads, with defaults filled in as transformers does.

    Raises ValueError for what the engine does not implement, rather than computing something else.
    """
    unsupported = []
    if config.get("model_type") != "llama":
        unsupported.append(f"model_type {config.get('model_type')!r} (only 'llama')")
    if config.get("hidden_act", "silu") != "silu":
        unsupported.append(f"hidden_act {config['hidden_act']!r} (only 'silu')")
    if config.get("attention_bias") or config.get("mlp_bias"):
        unsupported.append("attention_bias / mlp_bias (no biases)")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        unsupported.append(f"rope_type {rope.get('rope_type', rope.get('type'))!r} (only 'default')")
    if config.get("sliding_window") or config.get("use_sliding_window"):
        unsupported.append("sliding_window")
    if unsupported:
        raise ValueError(
            "the JavaScript demo model implements a plain Llama and cannot run this config: "
            + "; ".join(unsupported)
            + ". Convert the book's demo model, or a LlamaConfig without these."
        )
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    if heads % kv_heads:
        raise ValueError(f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads}).")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    return {
        "vocab_size": config["vocab_size"],
        "hidden_size": config["hidden_size"],
        "intermediate_size": config["intermediate_size"],
        "num_hidden_layers": config["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": config.get("head_dim") or config["hidden_size"] // heads,
        "rms_norm_eps": config.get("rms_norm_eps", 1e-6),
        "rope_theta": theta,
        "max_position_embeddings": config["max_position_embeddings"],
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "bos_token_id": config["bos_token_id"],
    }


def _vocabulary(tokenizer: dict, vocab_size: int) -> tuple[list[str], list[str]]:
    """(tokens by id, special tokens) from a word-level ``tokenizer.json`` like the demo's."""
    model = tokenizer.get("model", {})
    if model.get("type") != "WordLevel":
        raise ValueError(f"expected the demo's WordLevel tokenizer; got {model.get('type')!r}.")
    by_id = {index: token for token, index in model["vocab"].items()}
    if sorted(by_id) != list(range(vocab_size)):
        raise ValueError(f"the tokenizer's ids are not 0..{vocab_size - 1} (vocab_size in config.json).")
    vocab = [by_id[i] for i in range(vocab_size)]
    special = [added["content"] for added in tokenizer.get("added_tokens", []) if added.get("special")]
    multi = [token for token in vocab if token not in special and len(token) != 1]
    if multi:
        raise ValueError(f"the page types one character per token; these tokens are longer: {multi}.")
    return vocab, special


def _tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the engine reads, by its transformers name, with the shape it must have.

    ``rotary_emb.cos`` and ``rotary_emb.sin`` are not in the checkpoint: ``_rope_tables`` computes them.
    """
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    q_out = config["num_attention_heads"] * config["head_dim"]
    kv_out = config["num_key_value_heads"] * config["head_dim"]
    shapes = {"model.embed_tokens.weight": (config["vocab_size"], hidden)}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shapes |= {
            prefix + "input_layernorm.weight": (hidden,),
            prefix + "self_attn.q_proj.weight": (q_out, hidden),
            prefix + "self_attn.k_proj.weight": (kv_out, hidden),
            prefix + "self_attn.v_proj.weight": (kv_out, hidden),
            prefix + "self_attn.o_proj.weight": (hidden, q_out),
            prefix + "post_attention_layernorm.weight": (hidden,),
            prefix + "mlp.gate_proj.weight": (inter, hidden),
            prefix + "mlp.up_proj.weight": (inter, hidden),
            prefix + "mlp.down_proj.weight": (hidden, inter),
        }
    shapes["model.norm.weight"] = (hidden,)
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (config["vocab_size"], hidden)
    half = config["head_dim"] // 2
    shapes["rotary_emb.cos"] = shapes["rotary_emb.sin"] = (config["max_position_embeddings"], half)
    return shapes


def _rope_tables(model_dir: Path, config: dict) -> dict[str, np.ndarray]:
    """RoPE's cos and sin for every position, as transformers' LlamaRotaryEmbedding computes them.

    The page uses these float32 values rather than its own Math.cos: torch's vectorized cos and
    sin (SLEEF) differ from the correctly rounded values in the last bit for a few percent of
    the entries, and the network amplifies that to ~1e-4 in the logits. Each table is
    ``(max_position_embeddings, head_dim / 2)``: the second half of head_dim repeats the first
    (``emb = cat(freqs, freqs)``), which is checked here.
    """
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rotary = LlamaRotaryEmbedding(LlamaConfig.from_pretrained(model_dir))
    positions = torch.arange(config["max_position_embeddings"])[None]
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)  # (1, positions, head_dim)
    half = config["head_dim"] // 2
    tables = {}
    for name, table in (("rotary_emb.cos", cos[0]), ("rotary_emb.sin", sin[0])):
        if not torch.equal(table[:, :half], table[:, half:]):
            raise ValueError(f"{name}: the two halves of head_dim differ; this is not default RoPE.")
        tables[name] = table[:, :half].numpy()
    return tables


def weights_script(model_dir: str | Path | None = None) -> str:
    """The text of ``attnviz-demo-weights.js`` for the checkpoint in ``model_dir`` (default: the demo's).

    The script sets ``globalThis.attnvizDemoWeights`` to the engine's config, the vocabulary, the
    float32 weights (byte planes, deflate, base85: lossless) and RoPE's cos/sin tables for every
    position. The same checkpoint always gives the same text.
    """
    from safetensors.numpy import load_file

    model_dir = Path(model_dir) if model_dir is not None else _demo_dir()
    checkpoint = model_dir / "model.safetensors"
    config = _engine_config(_read_json(model_dir / "config.json"))
    vocab, special = _vocabulary(_read_json(model_dir / "tokenizer.json"), config["vocab_size"])
    stored = load_file(checkpoint) | _rope_tables(model_dir, config)

    tensors, parts, offset = {}, [], 0
    for name, shape in _tensor_shapes(config).items():
        if name not in stored:
            raise ValueError(f"{checkpoint} has no tensor {name}.")
        values = stored[name]
        if values.dtype != np.float32 or values.shape != shape:
            raise ValueError(f"{name}: expected float32 {shape}; got {values.dtype} {values.shape}.")
        parts.append(values.astype("<f4").ravel())
        tensors[name] = {"offset": offset, "shape": list(shape)}
        offset += values.size
    flat = np.concatenate(parts)  # (count,) float32, little-endian
    planes = flat.view(np.uint8).reshape(-1, 4).T.copy()  # (4, count): byte b of every value
    # base85's alphabet has no " and no backslash: the text goes into a JSON string as it is
    data = base64.b85encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")

    packed = {
        "format": WEIGHTS_FORMAT,
        "source": f"{checkpoint.name}, sha256 {hashlib.sha256(checkpoint.read_bytes()).hexdigest()}",
        "config": config,
        "vocab": vocab,
        "special_tokens": special,
        "tensors": tensors,
        "count": int(flat.size),
        "encoding": "float32 little-endian, split into 4 byte planes, zlib deflate, base85 (RFC 1924 alphabet)",
        "data": data,
    }
    fields = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in packed.items())
    return (
        "// The attnviz demo model's weights for attnviz-demo-model.js.\n"
        "// Written by attnviz.weblive from the package's model.safetensors; do not edit.\n"
        f"globalThis.attnvizDemoWeights = {{\n{fields}\n}};\n"
    )


def unpack_weights(script: str) -> dict[str, np.ndarray]:
    """The tensors a weights script carries, by name, decoded in Python as the page decodes them.

    For checks that the page runs the very checkpoint the package ships (chapter 9, the tests).
    """
    match = re.search(r"^globalThis\.attnvizDemoWeights = (\{.*\});\n\Z", script, re.DOTALL | re.MULTILINE)
    if not match:
        raise ValueError("not a weights script of attnviz.weblive (no `globalThis.attnvizDemoWeights = {...};`).")
    packed = json.loads(match.group(1))
    planes = np.frombuffer(zlib.decompress(base64.b85decode(packed["data"])), dtype=np.uint8)
    values = planes.reshape(4, -1).T.copy().view("<f4").ravel()  # (count,) float32
    if values.size != packed["count"]:
        raise ValueError(f"the script unpacks to {values.size} values; it says {packed['count']}.")
    return {
        name: values[entry["offset"] : entry["offset"] + int(np.prod(entry["shape"]))].reshape(entry["shape"])
        for name, entry in packed["tensors"].items()
    }


def write_live_model(directory: str | Path, model_dir: str | Path | None = None) -> list[Path]:
    """Write the two scripts that run the demo model in a page into ``directory``; return their paths.

    Load them in the returned order with ``<script src=...>``, then ``await attnvizDemo.ready`` and
    call ``attnvizDemo.run("abc|abc", {bidirectional: false, noRope: false})`` (chapter 9).

    Args:
        directory: where to write ``attnviz-demo-weights.js`` and ``attnviz-demo-model.js``
            (created if missing), e.g. the built site's ``_static`` folder.
        model_dir: a Llama checkpoint folder with ``config.json``, ``model.safetensors`` and a
            word-level ``tokenizer.json``; default the book's demo model.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_NAME
    engine = directory / ENGINE_NAME
    weights.write_text(weights_script(model_dir), encoding="utf-8")
    engine.write_text(ENGINE_JS.read_text(encoding="utf-8"), encoding="utf-8")
    return [weights, engine]


# ---- the torch side of the equality checks (tests/test_live_model.py, benchmarks/live_model.py)


def _typeable(model_dir: Path) -> list[str]:
    config = _read_json(model_dir / "config.json")
    vocab, special = _vocabulary(_read_json(model_dir / "tokenizer.json"), config["vocab_size"])
    return [token for token in vocab if token not in special]


def random_texts(count: int, *, seed: int = 0, min_tokens: int = 2, max_tokens: int = 64) -> list[str]:
    """``count`` random inputs of ``min_tokens``..``max_tokens`` demo tokens, ``<bos>`` included.

    Even-numbered ones are shaped like the copy task the demo model learned (``letters|letters``),
    the others are any typeable tokens, so both the trained regime and arbitrary text are compared.
    """
    typeable = _typeable(_demo_dir())
    letters = [token for token in typeable if token.isalpha()]
    rng = np.random.default_rng(seed)
    texts = []
    for index in range(count):
        length = int(rng.integers(min_tokens, max_tokens + 1)) - 1  # tokens after <bos>
        if index % 2 == 0 and length >= 3:
            half = (length - 1) // 2
            source = "".join(rng.choice(letters, half))
            text = source + "|" + source + "".join(rng.choice(letters, length - 1 - 2 * half))
        else:
            text = "".join(rng.choice(typeable, length))
        texts.append(text)
    return texts


def text_tokens(text: str, bos_token: str = "<bos>") -> list[str]:
    """The tokens the page makes of ``text``: ``<bos>``, then one token per non-space character."""
    body = text.strip()
    if body.startswith(bos_token):
        body = body[len(bos_token) :]
    return [bos_token, *(char for char in body if not char.isspace())]


def reference_outputs(model, input_ids, *, bidirectional: bool = False, no_rope: bool = False):
    """What the JavaScript forward must reproduce, from torch: ``(attentions, logits)`` as numpy.

    ``attentions`` is ``(layers, heads, seq, seq)`` from ``attnviz.capture_attention``, ``logits``
    is ``(seq, vocab)``, both for batch row 0 of ``input_ids``, with ``attnviz.bidirectional`` and
    ``attnviz.no_rope`` applied as asked (and undone afterwards).
    """
    import contextlib

    import torch

    from attnviz.capture import capture_attention
    from attnviz.patch import bidirectional as make_bidirectional
    from attnviz.patch import no_rope as make_no_rope

    with contextlib.ExitStack() as stack:
        if bidirectional:
            stack.enter_context(make_bidirectional(model))
        if no_rope:
            stack.enter_context(make_no_rope(model))
        attentions = capture_attention(model, input_ids=input_ids)
        with torch.no_grad():
            logits = model(input_ids=input_ids, use_cache=False).logits
    return np.stack([weights[0].numpy() for weights in attentions]), logits[0].numpy()
