/*
 * attnviz: the book's demo model, run in the page (chapter 9, issue 18).
 *
 * A forward pass of the 2-layer LlamaForCausalLM that ships in attnviz's demo folder, written
 * the way transformers' modeling_llama.py computes it (transformers 5.24):
 *
 *   embed_tokens -> [input_layernorm -> self_attn -> + residual
 *                    -> post_attention_layernorm -> mlp -> + residual] x layers
 *   -> norm -> lm_head
 *
 * with the book's four variants: causal or bidirectional mask, RoPE or NoRoPE (no rotation,
 * which is what attnviz.no_rope's cos = 1, sin = 0 amounts to).
 *
 * No dependencies and no DOM: this file only defines `globalThis.attnvizDemo`. The weights come
 * from a second script, written by `attnviz.weblive` at build time, which sets
 * `globalThis.attnvizDemoWeights`. A <script> tag loads both over http and from file://, where
 * fetch() of a local file is refused.
 *
 *   await attnvizDemo.ready;   // decodes the weights once
 *   attnvizDemo.run("abc|abc", {bidirectional: false, noRope: false})
 *   // -> {tokens: ["<bos>", "a", ...], attentions: [layer][head][query][key], logits: [position][vocab]}
 *
 * Numerics. Every tensor torch holds in float32 is a Float32Array here, and each operation
 * rounds where torch's CPU kernels round: matmuls as one float32 fused multiply-add per term in
 * index order (MKL's sgemm), sums as ATen's vectorized reductions add their lanes, exp as SLEEF's
 * expf (which ATen uses), and RoPE's cos/sin tables computed by transformers itself at build
 * time. That is what makes the page agree with torch 2.13 on an x86-64 CPU with AVX-512 (where
 * the book is built) to ~2e-6 in the attention weights and ~2e-5 in the logits, most inputs bit
 * for bit; short inputs differ a little, because MKL takes another path for a few rows. Summed
 * in exact arithmetic instead, the result would be nearer the true value but up to ~3e-4 away
 * from torch in the logits: on some inputs the network amplifies float32 rounding that much.
 * On a CPU where torch adds in another order, the agreement is at that float32 level.
 */
(function (root) {
  "use strict";

  const WEIGHTS_FORMAT = "attnviz-demo-weights/1";

  // ---------------------------------------------------------------- float32 arithmetic

  // Math.fround rounds a float64 to the nearest float32. A sum, product or quotient of two
  // float32 values computed in float64 and then rounded this way is the correctly rounded
  // float32 result, as the CPU's float32 instruction gives it.
  const f32 = Math.fround;

  /** A float32 fused multiply-add, a * b + c with one rounding (a * b is exact in float64). */
  const fma32 = (a, b, c) => f32(a * b + c);

  /** Round half to even, as the CPU's float-to-integer conversion does (Math.round rounds half up). */
  function rint(x) {
    const r = Math.round(x);
    return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // SLEEF's single-precision exp with 1-ulp accuracy (sleef.org, Boost licence), the exp that
  // ATen's vectorized softmax and SiLU call: exp(d) = 2^q * exp(s), with s = d - q * ln 2 in two
  // parts and exp(s) from a degree-7 polynomial. The constants are float32 values.
  const EXP_LOG2E = f32(1.442695040888963407359924681001892137426645954152985934135449406931);
  const EXP_LN2_HI = f32(0.693145751953125);
  const EXP_LN2_LO = f32(1.428606765330187045e-6);
  const EXP_POLY = [
    0.000198527617612853646278381, 0.00139304355252534151077271, 0.00833336077630519866943359,
    0.0416664853692054748535156, 0.166666671633720397949219, 0.5,
  ].map(f32);

  function expf(d) {
    if (d < -104) return 0;
    if (d > 100) return Infinity;
    const q = rint(f32(d * EXP_LOG2E));
    let s = fma32(q, -EXP_LN2_HI, d);
    s = fma32(q, -EXP_LN2_LO, s);
    let u = EXP_POLY[0];
    for (let i = 1; i < EXP_POLY.length; i++) u = fma32(u, s, EXP_POLY[i]);
    u = f32(1 + fma32(f32(s * s), u, s));
    const half = q >> 1; // times 2^q in two steps, so that neither factor overflows
    return f32(f32(u * 2 ** half) * 2 ** (q - half));
  }

  /**
   * The sum of values[start .. start + n) as ATen's vectorized reduce_all adds it with 16-lane
   * (AVX-512) vectors: lane l sums elements l, l + 16, l + 32, ... in order, then the lanes are
   * added pairwise (l + l^8, then ^4, ^2, ^1). Rows shorter than 16 are added in order.
   */
  const lanes16 = new Float64Array(16);
  function vectorSum16(values, start, n) {
    if (n < 16) {
      let sum = values[start];
      for (let i = 1; i < n; i++) sum = f32(sum + values[start + i]);
      return sum;
    }
    for (let l = 0; l < 16; l++) lanes16[l] = values[start + l];
    for (let i = 16; i < n; i++) lanes16[i % 16] = f32(lanes16[i % 16] + values[start + i]);
    for (let width = 8; width >= 1; width /= 2) {
      for (let l = 0; l < width; l++) lanes16[l] = f32(lanes16[l] + lanes16[l + width]);
    }
    return lanes16[0];
  }

  /**
   * The sum of squares of x[start .. start + n) as torch's x.pow(2).sum(-1) adds it on the CPU:
   * 8-lane chunks go in turn to four accumulators, which are added lane-wise, then the 8 lanes
   * in order. (Matched bit for bit for rows of 128, the demo's hidden size.)
   */
  const lanes32 = new Float64Array(32); // (accumulator, lane) 4 x 8
  function sumOfSquares(x, start, n) {
    lanes32.fill(0);
    const chunks = Math.floor(n / 8);
    for (let c = 0; c < chunks; c++) {
      const a = (c % 4) * 8;
      for (let l = 0; l < 8; l++) {
        const v = x[start + c * 8 + l];
        lanes32[a + l] = f32(lanes32[a + l] + f32(v * v));
      }
    }
    let sum = 0;
    for (let l = 0; l < 8; l++) {
      sum = f32(sum + f32(f32(f32(lanes32[l] + lanes32[8 + l]) + lanes32[16 + l]) + lanes32[24 + l]));
    }
    for (let i = chunks * 8; i < n; i++) sum = f32(sum + f32(x[start + i] * x[start + i]));
    return sum;
  }

  // ---------------------------------------------------------------- weights

  function base64ToBytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function inflate(bytes) {
    // DecompressionStream is built into browsers (Chrome 80, Firefox 113, Safari 16.4) and Node 18.
    if (typeof DecompressionStream === "undefined") {
      throw new Error("attnvizDemo: this browser has no DecompressionStream, needed to unpack the weights.");
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // The converter splits the float32 values into four byte planes (all first bytes, then all
  // second bytes, ...) before deflate, because the exponent bytes then compress well. Undo that.
  function unshuffle(planes) {
    const count = planes.length / 4;
    const bytes = new Uint8Array(planes.length);
    for (let b = 0; b < 4; b++) {
      const plane = planes.subarray(b * count, (b + 1) * count);
      for (let i = 0; i < count; i++) bytes[4 * i + b] = plane[i];
    }
    const values = new Float32Array(count);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true); // little-endian, as safetensors
    return values;
  }

  /**
   * Check the shipped cos/sin tables against RoPE's definition with theta from the config:
   * inv_freq[i] = 1 / theta^(2i / head_dim), angle = position * inv_freq[i]. torch's vectorized
   * cos and sin are within an ulp or two of Math.cos and Math.sin; a wrong table is far off.
   */
  function checkRopeTables(cos, sin, theta, positions, half) {
    for (let t = 0; t < positions; t++) {
      for (let i = 0; i < half; i++) {
        const invFreq = f32(1 / f32(Math.pow(theta, f32((2 * i) / (2 * half)))));
        const angle = f32(t * invFreq);
        const k = t * half + i;
        if (Math.abs(cos[k] - Math.cos(angle)) > 1e-6 || Math.abs(sin[k] - Math.sin(angle)) > 1e-6) {
          throw new Error(`attnvizDemo: the RoPE tables do not match rope_theta ${theta} at position ${t}.`);
        }
      }
    }
  }

  function buildModel(packed, values) {
    const config = packed.config;
    const tensor = (name, shape) => {
      const entry = packed.tensors[name];
      if (!entry) throw new Error(`attnvizDemo: the weights have no tensor ${name}.`);
      if (shape.join() !== entry.shape.join()) {
        throw new Error(`attnvizDemo: ${name} has shape [${entry.shape}], expected [${shape}].`);
      }
      const size = shape.reduce((a, b) => a * b, 1);
      return values.subarray(entry.offset, entry.offset + size);
    };
    const hidden = config.hidden_size;
    const heads = config.num_attention_heads;
    const kvHeads = config.num_key_value_heads;
    const headDim = config.head_dim;
    const inter = config.intermediate_size;
    const vocab = config.vocab_size;
    const positions = config.max_position_embeddings;

    const layers = [];
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      // nn.Linear keeps its weight as (out_features, in_features)
      layers.push({
        input_layernorm: tensor(p + "input_layernorm.weight", [hidden]),
        q_proj: tensor(p + "self_attn.q_proj.weight", [heads * headDim, hidden]),
        k_proj: tensor(p + "self_attn.k_proj.weight", [kvHeads * headDim, hidden]),
        v_proj: tensor(p + "self_attn.v_proj.weight", [kvHeads * headDim, hidden]),
        o_proj: tensor(p + "self_attn.o_proj.weight", [hidden, heads * headDim]),
        post_attention_layernorm: tensor(p + "post_attention_layernorm.weight", [hidden]),
        gate_proj: tensor(p + "mlp.gate_proj.weight", [inter, hidden]),
        up_proj: tensor(p + "mlp.up_proj.weight", [inter, hidden]),
        down_proj: tensor(p + "mlp.down_proj.weight", [hidden, inter]),
      });
    }
    const embed_tokens = tensor("model.embed_tokens.weight", [vocab, hidden]);
    // LlamaRotaryEmbedding's cos and sin for positions 0 .. max_position_embeddings - 1, one half
    // of head_dim each: (positions, head_dim / 2). The other half repeats it (emb = cat(freqs, freqs)).
    const cos = tensor("rotary_emb.cos", [positions, headDim / 2]);
    const sin = tensor("rotary_emb.sin", [positions, headDim / 2]);
    checkRopeTables(cos, sin, config.rope_theta, positions, headDim / 2);
    return {
      config,
      vocab: packed.vocab, // id -> token
      tokenIds: new Map(packed.vocab.map((token, id) => [token, id])),
      // what a reader may type: every token except the special ones (<pad>, <bos>)
      typeable: new Set(packed.vocab.filter((token) => !packed.special_tokens.includes(token))),
      bosToken: packed.vocab[config.bos_token_id],
      embed_tokens,
      layers,
      norm: tensor("model.norm.weight", [hidden]),
      // tied: the output projection is the embedding matrix itself, as transformers ties them
      lm_head: config.tie_word_embeddings ? embed_tokens : tensor("lm_head.weight", [vocab, hidden]),
      rope: { cos, sin },
    };
  }

  let model = null;
  let loading = null;

  /**
   * Decode `globalThis.attnvizDemoWeights` once; resolves to the model. A failed load is not
   * kept, so a page that loads the weights script later can simply call load() again.
   */
  function load() {
    if (!loading) {
      loading = (async () => {
        const packed = root.attnvizDemoWeights;
        if (!packed) {
          throw new Error(
            "attnvizDemo: no weights. Load attnviz-demo-weights.js (written by attnviz.write_live_model) " +
              "with a <script> tag before awaiting attnvizDemo.ready.",
          );
        }
        if (packed.format !== WEIGHTS_FORMAT) {
          throw new Error(`attnvizDemo: weights in format ${packed.format}; this engine reads ${WEIGHTS_FORMAT}.`);
        }
        const values = unshuffle(await inflate(base64ToBytes(packed.data)));
        if (values.length !== packed.count) {
          throw new Error(`attnvizDemo: unpacked ${values.length} weights, expected ${packed.count}.`);
        }
        model = buildModel(packed, values);
        return model;
      })();
      loading.catch(() => {
        loading = null;
      });
    }
    return loading;
  }

  function loaded() {
    if (!model) throw new Error("attnvizDemo: the weights are not decoded yet; await attnvizDemo.ready first.");
    return model;
  }

  // ---------------------------------------------------------------- tokenizer

  /**
   * Letters (and "|") to tokens: the demo's word-level tokenizer has one token per character.
   * Spaces are optional. `<bos>` is put in front, as attnviz.demo_example does; a `<bos>` typed
   * at the very start is taken as that one, so the book's "<bos> t h e ... | t h e ..." works too.
   * Returns {tokens, ids}.
   */
  function tokenize(text) {
    const m = loaded();
    if (typeof text !== "string") throw new TypeError("attnvizDemo: the input must be a string of letters.");
    let start = text.search(/\S/);
    if (start < 0) start = text.length;
    if (text.startsWith(m.bosToken, start)) start += m.bosToken.length;
    const tokens = [m.bosToken];
    let position = start; // in UTF-16 code units, for the error message
    for (const char of text.slice(start)) {
      if (!/\s/.test(char)) {
        if (!m.typeable.has(char)) {
          throw new Error(
            `attnvizDemo: ${JSON.stringify(char)} (character ${position + 1}) is not in the demo model's ` +
              `vocabulary. Type only these: ${[...m.typeable].join(" ")} (spaces are optional).`,
          );
        }
        tokens.push(char);
      }
      position += char.length;
    }
    if (tokens.length > m.config.max_position_embeddings) {
      throw new Error(
        `attnvizDemo: ${tokens.length} tokens with <bos>; the demo model was trained on at most ` +
          `${m.config.max_position_embeddings} (max_position_embeddings). Type a shorter sequence.`,
      );
    }
    return { tokens, ids: tokens.map((token) => m.tokenIds.get(token)) };
  }

  // ---------------------------------------------------------------- the layers

  /** One dot product a[aStart..] . b[bStart..] of length n, as MKL's sgemm sums it (see matmulNT). */
  function dot(a, aStart, b, bStart, n) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum = fma32(a[aStart + i], b[bStart + i], sum);
    return sum;
  }

  /**
   * A @ B^T for row-major A (rows, n) and B (cols, n) read with strides: row r of A starts at
   * a[aStart + r * aStride], row c of B at b[bStart + c * bStride]. Returns (rows, cols).
   *
   * Each output is a chain of float32 fused multiply-adds over i = 0, 1, 2, ... in order: this
   * is how torch's CPU matmul (MKL sgemm) sums float32 for the demo's shapes, bit for bit from
   * about 11 rows on (fewer rows take another MKL path). The loop computes a block of 2 rows x 4
   * columns at once: the eight chains are independent, so the CPU overlaps them, and every value
   * loaded is used two or four times (2-3x faster in V8 than one dot product at a time). Each
   * output still sums exactly as dot() does.
   */
  function matmulNT(a, aStart, aStride, b, bStart, bStride, rows, cols, n) {
    const y = new Float32Array(rows * cols);
    let r = 0;
    for (; r + 1 < rows; r += 2) {
      const x0 = aStart + r * aStride;
      const x1 = x0 + aStride;
      const y0 = r * cols;
      const y1 = y0 + cols;
      let c = 0;
      for (; c + 3 < cols; c += 4) {
        const w0 = bStart + c * bStride;
        const w1 = w0 + bStride;
        const w2 = w1 + bStride;
        const w3 = w2 + bStride;
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0; // row r
        let b0 = 0, b1 = 0, b2 = 0, b3 = 0; // row r + 1
        for (let i = 0; i < n; i++) {
          const u = a[x0 + i];
          const v = a[x1 + i];
          const c0 = b[w0 + i], c1 = b[w1 + i], c2 = b[w2 + i], c3 = b[w3 + i];
          a0 = f32(a0 + u * c0); a1 = f32(a1 + u * c1); a2 = f32(a2 + u * c2); a3 = f32(a3 + u * c3);
          b0 = f32(b0 + v * c0); b1 = f32(b1 + v * c1); b2 = f32(b2 + v * c2); b3 = f32(b3 + v * c3);
        }
        y[y0 + c] = a0; y[y0 + c + 1] = a1; y[y0 + c + 2] = a2; y[y0 + c + 3] = a3;
        y[y1 + c] = b0; y[y1 + c + 1] = b1; y[y1 + c + 2] = b2; y[y1 + c + 3] = b3;
      }
      for (; c < cols; c++) {
        y[y0 + c] = dot(a, x0, b, bStart + c * bStride, n);
        y[y1 + c] = dot(a, x1, b, bStart + c * bStride, n);
      }
    }
    for (; r < rows; r++) {
      for (let c = 0; c < cols; c++) y[r * cols + c] = dot(a, aStart + r * aStride, b, bStart + c * bStride, n);
    }
    return y;
  }

  /**
   * nn.Linear without bias: x (rows, inFeatures) @ weight.T -> (rows, outFeatures); weight is
   * (outFeatures, inFeatures) as nn.Linear stores it.
   */
  function linear(x, weight, rows, inFeatures, outFeatures) {
    return matmulNT(x, 0, inFeatures, weight, 0, inFeatures, rows, outFeatures, inFeatures);
  }

  /** LlamaRMSNorm: weight * (x * rsqrt(mean(x^2) + eps)), per row of x (rows, hidden). */
  function rmsNorm(x, weight, rows, hidden, eps) {
    const y = new Float32Array(rows * hidden);
    const epsilon = f32(eps); // torch adds the Python float as a float32
    for (let r = 0; r < rows; r++) {
      const xr = r * hidden;
      const variance = f32(sumOfSquares(x, xr, hidden) / hidden);
      const scale = f32(1 / f32(Math.sqrt(f32(variance + epsilon)))); // rsqrt: a float32 sqrt, then 1 / it
      for (let i = 0; i < hidden; i++) y[xr + i] = weight[i] * f32(x[xr + i] * scale);
    }
    return y;
  }

  /**
   * apply_rotary_pos_emb on one projection, in place: x * cos + rotate_half(x) * sin, where
   * rotate_half(x) = cat(-x2, x1) for the halves x1, x2 of each head's vector.
   * x is (seq, numHeads * head_dim), the layout q_proj / k_proj return; cos and sin are
   * (positions, head_dim / 2), the same for both halves.
   */
  function applyRope(x, cos, sin, seq, numHeads, headDim) {
    const half = headDim / 2;
    for (let t = 0; t < seq; t++) {
      for (let h = 0; h < numHeads; h++) {
        const base = (t * numHeads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i];
          const s = sin[t * half + i];
          const x1 = x[base + i];
          const x2 = x[base + half + i];
          x[base + i] = f32(x1 * c) + f32(-x2 * s);
          x[base + half + i] = f32(x2 * c) + f32(x1 * s);
        }
      }
    }
  }

  /**
   * eager_attention_forward for all heads of one layer.
   * query (seq, heads * head_dim); key, value (seq, kv_heads * head_dim).
   * Returns the weights (heads, q_len, k_len) and the output (seq, heads * head_dim).
   */
  function attention(query, key, value, seq, cfg, bidirectional) {
    const heads = cfg.num_attention_heads;
    const kvHeads = cfg.num_key_value_heads;
    const headDim = cfg.head_dim;
    const numKeyValueGroups = heads / kvHeads; // repeat_kv: query head h reads key/value head h / groups
    const scaling = f32(1 / Math.sqrt(headDim)); // head_dim ** -0.5, applied in float32
    const weights = new Float32Array(heads * seq * seq); // (heads, q_len, k_len); masked keys stay 0
    const output = new Float32Array(seq * heads * headDim); // (seq, heads * head_dim)
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / numKeyValueGroups);
      // query_states @ key_states^T for this head: (q_len, k_len). The causal mask's keys are
      // computed too (it is quicker than skipping them) and then left out.
      const scores = matmulNT(query, h * headDim, heads * headDim, key, kvh * headDim, kvHeads * headDim, seq, seq, headDim);
      for (let i = 0; i < seq; i++) {
        const row = (h * seq + i) * seq;
        const lastKey = bidirectional ? seq - 1 : i; // the causal mask: query i sees keys 0..i
        let max = -Infinity;
        for (let j = 0; j <= lastKey; j++) {
          const score = f32(scores[i * seq + j] * scaling);
          weights[row + j] = score;
          if (score > max) max = score;
        }
        // softmax(dim=-1, dtype=float32) as ATen computes it: exp(score - max), their sum over
        // the whole row (masked zeros included, which decides how the lanes add), times 1 / sum
        for (let j = 0; j <= lastKey; j++) weights[row + j] = expf(f32(weights[row + j] - max));
        const inverse = f32(1 / vectorSum16(weights, row, seq));
        for (let j = 0; j <= lastKey; j++) weights[row + j] = f32(weights[row + j] * inverse);
        // attn_output = attn_weights @ value_states: for each of the head_dim outputs a chain of
        // fused multiply-adds over the keys in order; the chains run side by side, and storing
        // into the Float32Array rounds each step to float32. Masked keys would add 0 * value.
        const out = (i * heads + h) * headDim;
        for (let j = 0; j <= lastKey; j++) {
          const weight = weights[row + j];
          const v = (j * kvHeads + kvh) * headDim;
          for (let d = 0; d < headDim; d++) output[out + d] += weight * value[v + d];
        }
      }
    }
    return { weights, output };
  }

  /** act_fn(gate) * up, elementwise (LlamaMLP before down_proj): SiLU is x / (1 + exp(-x)). */
  function gatedSilu(gate, up) {
    const y = new Float32Array(gate.length);
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i];
      y[i] = f32(g / f32(1 + expf(-g))) * up[i];
    }
    return y;
  }

  function addInPlace(x, y) {
    for (let i = 0; i < x.length; i++) x[i] += y[i]; // rounded to float32 on store
  }

  const OPTION_NAMES = ["bidirectional", "noRope"];

  function checkOptions(options) {
    const given = options || {};
    for (const name of Object.keys(given)) {
      if (!OPTION_NAMES.includes(name)) {
        throw new TypeError(`attnvizDemo: unknown option ${JSON.stringify(name)}; the options are ${OPTION_NAMES}.`);
      }
    }
    return { bidirectional: Boolean(given.bidirectional), noRope: Boolean(given.noRope) };
  }

  /**
   * The forward pass on token ids. Returns typed arrays, for a page that redraws often:
   *   attentions: one Float32Array (heads, q_len, k_len) per layer
   *   logits: Float32Array (seq, vocab)
   */
  function forward(ids, options) {
    const m = loaded();
    const { bidirectional, noRope } = checkOptions(options);
    const cfg = m.config;
    const seq = ids.length;
    const hidden = cfg.hidden_size;
    const heads = cfg.num_attention_heads;
    const kvHeads = cfg.num_key_value_heads;
    const headDim = cfg.head_dim;
    const inter = cfg.intermediate_size;
    if (seq < 1 || seq > cfg.max_position_embeddings) {
      throw new Error(`attnvizDemo: forward takes 1 to ${cfg.max_position_embeddings} tokens; got ${seq}.`);
    }

    // inputs_embeds: (seq, hidden)
    const hiddenStates = new Float32Array(seq * hidden);
    ids.forEach((id, t) => {
      if (!(id >= 0 && id < cfg.vocab_size)) throw new Error(`attnvizDemo: token id ${id} is outside the vocabulary.`);
      hiddenStates.set(m.embed_tokens.subarray(id * hidden, (id + 1) * hidden), t * hidden);
    });

    const attentions = [];
    for (const layer of m.layers) {
      // self-attention block
      let x = rmsNorm(hiddenStates, layer.input_layernorm, seq, hidden, cfg.rms_norm_eps);
      const queryStates = linear(x, layer.q_proj, seq, hidden, heads * headDim); // (seq, heads * head_dim)
      const keyStates = linear(x, layer.k_proj, seq, hidden, kvHeads * headDim); // (seq, kv_heads * head_dim)
      const valueStates = linear(x, layer.v_proj, seq, hidden, kvHeads * headDim); // (seq, kv_heads * head_dim)
      if (!noRope) {
        // NoRoPE's cos = 1, sin = 0 would give q * 1 + rotate_half(q) * 0 = q: no rotation at all
        applyRope(queryStates, m.rope.cos, m.rope.sin, seq, heads, headDim);
        applyRope(keyStates, m.rope.cos, m.rope.sin, seq, kvHeads, headDim);
      }
      const { weights, output } = attention(queryStates, keyStates, valueStates, seq, cfg, bidirectional);
      attentions.push(weights); // (heads, q_len, k_len)
      addInPlace(hiddenStates, linear(output, layer.o_proj, seq, heads * headDim, hidden));

      // MLP block: down_proj(silu(gate_proj(x)) * up_proj(x))
      x = rmsNorm(hiddenStates, layer.post_attention_layernorm, seq, hidden, cfg.rms_norm_eps);
      const gate = linear(x, layer.gate_proj, seq, hidden, inter); // (seq, intermediate)
      const up = linear(x, layer.up_proj, seq, hidden, inter); // (seq, intermediate)
      addInPlace(hiddenStates, linear(gatedSilu(gate, up), layer.down_proj, seq, inter, hidden));
    }
    const normed = rmsNorm(hiddenStates, m.norm, seq, hidden, cfg.rms_norm_eps);
    const logits = linear(normed, m.lm_head, seq, hidden, cfg.vocab_size); // (seq, vocab)
    return { attentions, logits };
  }

  /** Typed (outer, rows, cols) values to nested plain arrays [outer][row][col]. */
  function nested(values, outer, rows, cols) {
    const result = [];
    for (let a = 0; a < outer; a++) {
      const block = [];
      for (let r = 0; r < rows; r++) {
        const start = (a * rows + r) * cols;
        block.push(Array.from(values.subarray(start, start + cols)));
      }
      result.push(block);
    }
    return result;
  }

  /**
   * The stable hook: tokenize `text`, run the model, return plain arrays.
   * {tokens: [...], attentions: [layer][head][query][key], logits: [position][vocab]}
   */
  function run(text, options) {
    const { tokens, ids } = tokenize(text);
    const { attentions, logits } = forward(ids, options);
    const cfg = model.config;
    const seq = ids.length;
    return {
      tokens,
      attentions: attentions.map((weights) => nested(weights, cfg.num_attention_heads, seq, seq)),
      logits: nested(logits, 1, seq, cfg.vocab_size)[0],
    };
  }

  root.attnvizDemo = {
    get ready() {
      return load();
    },
    load,
    run,
    forward,
    tokenize,
    get config() {
      return loaded().config;
    },
    get vocab() {
      return loaded().vocab.slice();
    },
  };
})(globalThis);
