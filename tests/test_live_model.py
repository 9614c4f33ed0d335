"""The demo model run in the page (issue 18): attnviz.weblive's scripts in headless Chromium.

A standalone test page loads the two scripts that ``attnviz.write_live_model`` writes; it is
opened over a local http server and from disk (file://), and ``window.attnvizDemo.run`` is
compared with torch on random inputs in the four variants. Like tests/test_site.py this drives
Debian's chromium (``make test`` installs it).
"""

import base64
import http.server
import json
import re
import shutil
import threading
import zlib

import numpy as np
import pytest
import test_site
import torch
from safetensors.numpy import load_file
from transformers import LlamaForCausalLM

import attnviz
from attnviz import weblive
from attnviz.demo import DEMO_DIR, DEMO_TEXT

# the browser fixture of the site tests (Debian's chromium through Playwright)
browser = test_site.browser
pytestmark = pytest.mark.browser
VARIANTS = [  # (bidirectional, noRope)
    (False, False),
    (True, False),
    (False, True),
    (True, True),
]
RANDOM_INPUTS = 40  # benchmarks/live_model.py compares 200
MAX_ATTENTION_ERROR = 1e-5
MAX_LOGIT_ERROR = 1e-4

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>attnviz live model</title>
{scripts}
"""


def packed(script: str) -> dict:
    """The object a weights script assigns to globalThis.attnvizDemoWeights."""
    match = re.search(r"^globalThis\.attnvizDemoWeights = (\{.*\});\n\Z", script, re.DOTALL | re.MULTILINE)
    return json.loads(match.group(1))


def write_page(directory, model_dir=None, weights=True) -> None:
    """A page that loads the weights script (unless ``weights`` is False) and the engine."""
    paths = weblive.write_live_model(directory, model_dir)
    names = [p.name for p in paths if weights or p.name != weblive.WEIGHTS_NAME]
    scripts = "\n".join(f'<script src="{name}"></script>' for name in names)
    (directory / "index.html").write_text(PAGE.format(scripts=scripts), encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The test page, as reached over http from 127.0.0.1 and from disk: {"http": url, "file": url}."""
    directory = tmp_path_factory.mktemp("live")
    write_page(directory)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    yield {"http": f"http://127.0.0.1:{port}/index.html", "file": (directory / "index.html").as_uri()}
    httpd.shutdown()


def open_page(browser, url):
    """Open ``url``, wait for the weights to be decoded; return (page, requested URLs, errors)."""
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    page.evaluate("async () => { await window.attnvizDemo.ready; }")
    return page, requests, errors


def run(page, texts, bidirectional=False, no_rope=False):
    """``window.attnvizDemo.run`` on each text; the answer travels as one JSON string (quicker than
    Playwright's value-by-value serialization, and exact: JSON keeps every float64 digit)."""
    answer = page.evaluate(
        "([texts, options]) => JSON.stringify(texts.map((text) => window.attnvizDemo.run(text, options)))",
        [texts, {"bidirectional": bidirectional, "noRope": no_rope}],
    )
    return json.loads(answer)


def run_error(page, text, options=None) -> str:
    return page.evaluate(
        "([text, options]) => { try { window.attnvizDemo.run(text, options); return null; }"
        " catch (error) { return error.message; } }",
        [text, options or {}],
    )


@pytest.fixture(scope="module")
def demo():
    return attnviz.load_demo()


def references(model, tokenizer, texts) -> dict:
    """torch's (attentions, logits) for each variant and text: {(bidirectional, no_rope): [...]}."""
    result = {}
    for bidirectional, no_rope in VARIANTS:
        result[bidirectional, no_rope] = [
            weblive.reference_outputs(
                model,
                torch.tensor([tokenizer.convert_tokens_to_ids(weblive.text_tokens(text))]),
                bidirectional=bidirectional,
                no_rope=no_rope,
            )
            for text in texts
        ]
    return result


def max_errors(page, texts, expected) -> tuple[float, float]:
    """Max |run() - torch| over ``texts`` and the four variants: (attention, logits)."""
    worst_attention = worst_logit = 0.0
    for (bidirectional, no_rope), outputs in expected.items():
        results = run(page, texts, bidirectional, no_rope)
        for text, result, (attentions, logits) in zip(texts, results, outputs, strict=True):
            assert result["tokens"] == weblive.text_tokens(text)
            assert np.shape(result["attentions"]) == attentions.shape
            assert np.shape(result["logits"]) == logits.shape
            worst_attention = max(worst_attention, np.abs(np.array(result["attentions"]) - attentions).max())
            worst_logit = max(worst_logit, np.abs(np.array(result["logits"]) - logits).max())
    return worst_attention, worst_logit


@pytest.fixture(scope="module")
def random_inputs(demo):
    model, tokenizer = demo
    texts = weblive.random_texts(RANDOM_INPUTS, seed=1)
    return texts, references(model, tokenizer, texts)


@pytest.mark.parametrize("how", ["http", "file"])
def test_run_equals_torch_on_random_inputs(browser, site, random_inputs, how):
    page, _, errors = open_page(browser, site[how])
    texts, expected = random_inputs
    attention_error, logit_error = max_errors(page, texts, expected)
    print(f"{how}: max |d attention| {attention_error:.2e}, max |d logit| {logit_error:.2e}")
    assert attention_error <= MAX_ATTENTION_ERROR
    assert logit_error <= MAX_LOGIT_ERROR
    assert not errors, errors
    page.close()


@pytest.mark.parametrize("how", ["http", "file"])
def test_no_request_leaves_the_origin(browser, site, how):
    url = site[how]
    page, requests, errors = open_page(browser, url)
    run(page, ["abc|abc"], bidirectional=True, no_rope=True)
    origin = url.rsplit("/", 1)[0] + "/"
    names = {request.rsplit("/", 1)[-1] for request in requests}
    assert {"index.html", weblive.WEIGHTS_NAME, weblive.ENGINE_NAME} <= names, requests
    assert all(request.startswith(origin) for request in requests), requests
    assert not errors, errors
    page.close()


def test_bos_is_prepended_and_spaces_are_optional(browser, site, demo):
    _, tokenizer = demo
    page, _, _ = open_page(browser, site["http"])
    plain, spaced, with_bos = run(page, ["abc|abc", " a b c | a b c ", "<bos>abc|abc"])
    assert plain["tokens"] == ["<bos>", "a", "b", "c", "|", "a", "b", "c"]
    assert spaced == plain and with_bos == plain

    # the book's example, typed as DEMO_TEXT, is demo_example(), and the model copies it
    (example,) = run(page, [DEMO_TEXT])
    ids = attnviz.demo_example(tokenizer)
    assert example["tokens"] == tokenizer.convert_ids_to_tokens(ids[0].tolist())
    predicted = np.argmax(example["logits"], axis=-1)
    assert (predicted[17:31] == ids[0, 18:32].numpy()).mean() >= 0.9
    page.close()


def test_bad_input_gives_an_error_that_says_what_to_type(browser, site):
    page, _, _ = open_page(browser, site["http"])
    message = run_error(page, "abC|ab")
    assert '"C" (character 3) is not in the demo model\'s vocabulary' in message
    assert "| a b c" in message and "spaces are optional" in message
    assert "character 4" in run_error(page, "ab 1")
    assert "not in the demo model's vocabulary" in run_error(page, "a<bos>")  # only a leading <bos>
    assert "at most 64" in run_error(page, "a" * 64)  # 65 tokens with <bos>
    assert run_error(page, "a" * 63) is None
    assert 'unknown option "causal"' in run_error(page, "ab", {"causal": False})
    page.close()


def test_a_page_without_the_weights_says_so(browser, tmp_path):
    write_page(tmp_path, weights=False)
    page = browser.new_page()
    page.goto((tmp_path / "index.html").as_uri())
    message = page.evaluate("() => window.attnvizDemo.ready.then(() => null, (error) => error.message)")
    assert "no weights" in message and weblive.WEIGHTS_NAME in message
    assert "await attnvizDemo.ready" in run_error(page, "ab")
    # the weights script arriving later (say, loaded async) is picked up by the next ready
    page.add_script_tag(path=str(tmp_path / weblive.WEIGHTS_NAME))
    page.evaluate("async () => { await window.attnvizDemo.ready; }")
    assert run(page, ["ab"])[0]["tokens"] == ["<bos>", "a", "b"]
    page.close()


def test_rope_tables_that_do_not_match_the_config_are_refused(browser, tmp_path, monkeypatch):
    """The page checks the shipped cos/sin against rope_theta from the config (here: built with 500)."""
    monkeypatch.setattr(weblive, "_rope_tables", lambda model_dir, config: _tables_for_theta(500.0, config))
    write_page(tmp_path)
    page = browser.new_page()
    page.goto((tmp_path / "index.html").as_uri())
    message = page.evaluate("() => window.attnvizDemo.ready.then(() => null, (error) => error.message)")
    assert "do not match rope_theta 10000" in message
    page.close()


def _tables_for_theta(theta: float, config: dict) -> dict:
    positions = np.arange(config["max_position_embeddings"], dtype=np.float32)[:, None]
    half = config["head_dim"] // 2
    inv_freq = (1.0 / theta ** (np.arange(half, dtype=np.float32) * 2 / config["head_dim"])).astype(np.float32)
    angles = positions * inv_freq
    return {"rotary_emb.cos": np.cos(angles), "rotary_emb.sin": np.sin(angles)}


def test_the_engine_never_touches_the_page():
    """The page integration owns the DOM: the engine only defines globalThis.attnvizDemo."""
    code = weblive.ENGINE_JS.read_text(encoding="utf-8")
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", code, flags=re.DOTALL)  # comments may mention anything
    assert not re.findall(r"\b(document|window|fetch|XMLHttpRequest|localStorage)\b", code)
    assert "root.attnvizDemo = " in code


def test_gqa_tied_embeddings_and_config_values(browser, demo, tmp_path):
    """A random checkpoint with what the demo lacks: 2 key/value heads for 4 query heads, tied
    lm_head, another rope_theta and rms_norm_eps, all read from its config."""
    config = attnviz.tiny_config(
        "llama",
        vocab_size=29,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        rms_norm_eps=1e-3,
        max_position_embeddings=64,
        bos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    shutil.copy(DEMO_DIR / "tokenizer.json", checkpoint)
    site = tmp_path / "site"
    site.mkdir()
    write_page(site, checkpoint)
    converted = packed((site / weblive.WEIGHTS_NAME).read_text(encoding="utf-8"))
    assert "lm_head.weight" not in converted["tensors"]
    assert converted["config"]["rope_theta"] == 500.0 and converted["config"]["num_key_value_heads"] == 2
    assert converted["config"]["rms_norm_eps"] == 1e-3
    page, _, errors = open_page(browser, (site / "index.html").as_uri())
    texts = weblive.random_texts(8, seed=3)
    attention_error, logit_error = max_errors(page, texts, references(model, demo[1], texts))
    print(f"GQA, tied: max |d attention| {attention_error:.2e}, max |d logit| {logit_error:.2e}")
    assert attention_error <= MAX_ATTENTION_ERROR and logit_error <= MAX_LOGIT_ERROR
    assert not errors, errors
    page.close()


def test_weights_are_lossless_deterministic_and_small(demo):
    script = weblive.weights_script()
    assert script == weblive.weights_script()
    weights = packed(script)
    # undo the encoding in Python: base85, inflate, byte planes -> float32
    planes = np.frombuffer(zlib.decompress(base64.b85decode(weights["data"])), dtype=np.uint8)
    values = planes.reshape(4, -1).T.copy().view("<f4").ravel()
    assert values.size == weights["count"]
    tensors = {
        name: values[entry["offset"] : entry["offset"] + int(np.prod(entry["shape"]))].reshape(entry["shape"])
        for name, entry in weights["tensors"].items()
    }
    stored = load_file(DEMO_DIR / "model.safetensors")
    assert stored.keys() <= tensors.keys()
    for name, value in stored.items():
        assert np.array_equal(tensors[name], value), name
    # the RoPE tables are the model's own cos and sin, bit for bit
    model, _ = demo
    cos, sin = model.model.rotary_emb(torch.zeros(1), torch.arange(model.config.max_position_embeddings)[None])
    half = model.config.head_dim // 2
    assert np.array_equal(tensors["rotary_emb.cos"], cos[0, :, :half].numpy())
    assert np.array_equal(tensors["rotary_emb.sin"], sin[0, :, :half].numpy())

    added = len(script.encode()) + weblive.ENGINE_JS.stat().st_size
    print(f"added to the page: {added / 1e6:.3f} MB")
    assert added <= 1.6e6


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4}}, "rope_type 'llama3'"),
        ({"attention_bias": True}, "no biases"),
        ({"model_type": "gpt2"}, "model_type 'gpt2'"),
    ],
)
def test_converter_refuses_what_the_engine_does_not_compute(tmp_path, change, message):
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copy(DEMO_DIR / name, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(ValueError, match="cannot run this config") as error:
        weblive.weights_script(tmp_path)
    assert message in str(error.value)


def test_the_webassembly_kernel_runs_in_chromium_and_the_javascript_one_gives_the_same_bits(browser, site):
    """The matmul runs in WebAssembly where the browser has it (the speed of issue 18), and in
    JavaScript where it has not (no SIMD, or a policy that forbids it): both give the same bits."""
    texts = weblive.random_texts(12, seed=7) + ["a", "abc|abc", "q" * 63]
    page, _, errors = open_page(browser, site["http"])
    assert page.evaluate("window.attnvizDemo.kernel") == "webassembly"
    fallback = browser.new_page()
    fallback.add_init_script("delete window.WebAssembly")
    fallback.goto(site["http"], wait_until="load")
    fallback.evaluate("async () => { await window.attnvizDemo.ready; }")
    assert fallback.evaluate("window.attnvizDemo.kernel") == "javascript"
    for bidirectional, no_rope in VARIANTS:
        assert run(page, texts, bidirectional, no_rope) == run(fallback, texts, bidirectional, no_rope)
    assert not errors, errors
    page.close()
    fallback.close()
