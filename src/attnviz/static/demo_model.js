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
 * fetch() of a local file is refused. The matmuls run in a small WebAssembly module that this
 * file assembles itself, or in JavaScript where WebAssembly SIMD is missing: the same bits.
 *
 *   await attnvizDemo.ready;   // decodes the weights once
 *   attnvizDemo.run("abc|abc", {bidirectional: false, noRope: false})
 *   // -> {tokens: ["<bos>", "a", ...], attentions: [layer][head][query][key], logits: [position][vocab]}
 *
 * Numerics. Every tensor torch holds in float32 holds float32 values here (a Float32Array, or a
 * float64 array whose every value is a float32: see "the matmul kernel"), and each operation
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

  const WEIGHTS_FORMAT = "attnviz-demo-weights/2";

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

  const [EXP_P0, EXP_P1, EXP_P2, EXP_P3, EXP_P4, EXP_P5] = EXP_POLY;
  const POW2 = Float64Array.from({ length: 161 }, (_, k) => 2 ** (k - 80)); // POW2[80 + k] = 2 ** k, exact

  function expf(d) {
    if (d < -104) return 0;
    if (d > 100) return Infinity;
    const q = rint(f32(d * EXP_LOG2E)); // -150 .. 145
    let s = fma32(q, -EXP_LN2_HI, d);
    s = fma32(q, -EXP_LN2_LO, s);
    // Horner's rule over EXP_POLY, first coefficient first
    let u = fma32(fma32(fma32(fma32(fma32(EXP_P0, s, EXP_P1), s, EXP_P2), s, EXP_P3), s, EXP_P4), s, EXP_P5);
    u = f32(1 + fma32(f32(s * s), u, s));
    const half = q >> 1; // times 2^q in two steps, so that neither factor overflows
    return f32(f32(u * POW2[80 + half]) * POW2[80 + q - half]);
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

  // base85 with the alphabet of RFC 1924 (Python's base64.b85encode): every 5 characters are 4
  // bytes, big-endian, the digits most significant first; a last group of n < 5 characters is
  // n - 1 bytes, read as if padded with the highest digit ("~"). 6% shorter than base64 (5/4 against 4/3).
  const BASE85 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
  const BASE85_DIGIT = new Int8Array(128).fill(-1);
  for (let i = 0; i < 85; i++) BASE85_DIGIT[BASE85.charCodeAt(i)] = i;

  function base85ToBytes(text) {
    const rest = text.length % 5;
    if (rest === 1) throw new Error("attnvizDemo: the weights' data is cut short (base85).");
    const bytes = new Uint8Array(Math.floor(text.length / 5) * 4 + Math.max(rest - 1, 0));
    for (let start = 0, out = 0; start < text.length; start += 5, out += 4) {
      let value = 0; // at most 85^5 - 1 < 2^53: exact in a float64
      for (let k = 0; k < 5; k++) {
        const code = start + k < text.length ? text.charCodeAt(start + k) : 126; // "~"
        const digit = code < 128 ? BASE85_DIGIT[code] : -1;
        if (digit < 0) throw new Error(`attnvizDemo: the weights' data has a character that is not base85 at ${start + k}.`);
        value = value * 85 + digit;
      }
      if (value >= 2 ** 32) throw new Error(`attnvizDemo: the weights' data overflows at ${start} (base85).`);
      for (let b = 0; b < 4 && out + b < bytes.length; b++) bytes[out + b] = Math.floor(value / 2 ** (24 - 8 * b)) % 256;
    }
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
        const values = unshuffle(await inflate(base85ToBytes(packed.data)));
        if (values.length !== packed.count) {
          throw new Error(`attnvizDemo: unpacked ${values.length} weights, expected ${packed.count}.`);
        }
        model = await prepare(buildModel(packed, values));
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

  // ---------------------------------------------------------------- the matmul kernel

  // Nine tenths of the forward pass are the projections (nn.Linear), X @ W^T. They run on one
  // float64 heap that holds every projection's weights, once, and the activations they read and
  // write; each float64 there is exactly a float32 value (a weight of the checkpoint, or a result
  // rounded to float32), so a load needs no conversion and the arithmetic is unchanged.
  //
  // Layout. Activations are row-major (rows, features) with the rows padded to a multiple of
  // ROW_BLOCK (padding rows are set to 0 and their outputs never read). A weight (out, in) is
  // stored as (out / 2, in, 2): output features in pairs, the pair's two rows interleaved, so that
  // one 128-bit load gives W[c][i] and W[c + 1][i]; out is padded with zero rows to a multiple of
  // COL_BLOCK, and the outputs of those rows are never read.
  const ROW_BLOCK = 4;
  const COL_BLOCK = 4; // two pairs

  const roundUp = (n, block) => Math.ceil(n / block) * block;

  /**
   * Y = X @ W^T on the heap, in JavaScript: X (rows, n) at h[aOff] with row stride aStride, W
   * packed as above at h[wOff], Y (rows, cols) at h[yOff] with row stride yStride; rows is a
   * multiple of ROW_BLOCK and cols of COL_BLOCK.
   *
   * Each output is a chain of float32 fused multiply-adds over i = 0, 1, 2, ... in order: this
   * is how torch's CPU matmul (MKL sgemm) sums float32 for the demo's shapes, bit for bit from
   * about 11 rows on (fewer rows take another MKL path). The loop computes a block of 2 rows x 4
   * columns at once: the eight chains are independent, so the CPU overlaps them, and every value
   * loaded is used two or four times. Each output still sums as one chain would,
   *   y = 0; for i in order: y = f32(y + x[i] * w[i])
   * and the WebAssembly kernel below computes the very same chains, two at a time.
   */
  function matmulJS(h, aOff, aStride, wOff, n, yOff, yStride, rows, cols) {
    for (let r = 0; r < rows; r += 2) {
      const x0 = aOff + r * aStride;
      const x1 = x0 + aStride;
      const y0 = yOff + r * yStride;
      const y1 = y0 + yStride;
      for (let c = 0; c < cols; c += 4) {
        const w0 = wOff + c * n; // the pair (c, c + 1): (W[c][i], W[c + 1][i]) at w0 + 2i
        const w1 = w0 + 2 * n; // the pair (c + 2, c + 3)
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0; // row r
        let b0 = 0, b1 = 0, b2 = 0, b3 = 0; // row r + 1
        for (let i = 0; i < n; i++) {
          const u = h[x0 + i];
          const v = h[x1 + i];
          const k = 2 * i;
          const c0 = h[w0 + k], c1 = h[w0 + k + 1], c2 = h[w1 + k], c3 = h[w1 + k + 1];
          a0 = f32(a0 + u * c0); a1 = f32(a1 + u * c1); a2 = f32(a2 + u * c2); a3 = f32(a3 + u * c3);
          b0 = f32(b0 + v * c0); b1 = f32(b1 + v * c1); b2 = f32(b2 + v * c2); b3 = f32(b3 + v * c3);
        }
        h[y0 + c] = a0; h[y0 + c + 1] = a1; h[y0 + c + 2] = a2; h[y0 + c + 3] = a3;
        h[y1 + c] = b0; h[y1 + c + 1] = b1; h[y1 + c + 2] = b2; h[y1 + c + 3] = b3;
      }
    }
  }

  // The same matmul in WebAssembly with 128-bit SIMD (Chrome 91, Firefox 89, Safari 16.4, Node
  // 16.4), 3x faster: JavaScript has no float32 arithmetic, so each step is a float64 multiply
  // and add and two conversions (Math.fround, then back), and f64x2 instructions do those for
  // two outputs at once. The module is assembled here, byte by byte, from kernelBody(): about
  // 700 bytes, no build step. Where WebAssembly or its SIMD is missing, matmulJS runs instead,
  // with the same results.
  //
  // mm(aOff, aStride, wOff, n, yOff, yStride, rowBlocks, pairBlocks), byte offsets and strides
  // into the memory, computes Y = X @ W^T like matmulJS, for blocks of ROW_BLOCK rows x 2 pairs
  // (4 columns): 8 f64x2 accumulators, each lane one output, and per i
  //   acc = f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(acc + x[r][i] * (W[c][i], W[c+1][i])))
  // which is f32(acc + u * w) per lane: the product is exact in float64, the sum is rounded to
  // float64 and then to float32 (round to nearest even), as Math.fround does.
  const uleb = (n) => {
    const out = [];
    do {
      out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n);
    return out;
  };
  const sleb = (n) => {
    const out = [];
    for (;;) {
      const byte = n & 0x7f;
      n >>= 7;
      if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) return [...out, byte];
      out.push(byte | 0x80);
    }
  };
  const wasmVector = (items) => [...uleb(items.length), ...items.flat()];
  const wasmSection = (id, bytes) => [id, ...uleb(bytes.length), ...bytes];
  const wasmName = (text) => wasmVector([...text].map((char) => char.charCodeAt(0)));
  const I32 = 0x7f, V128 = 0x7b;

  function kernelBody(rowsPerBlock, pairsPerBlock) {
    const R = rowsPerBlock, P = pairsPerBlock;
    // parameters 0-7, then locals: i32 counters and pointers, v128 accumulators and operands
    const [aOff, aStride, wOff, n, yOff, yStride, rowBlocks, pairBlocks] = [0, 1, 2, 3, 4, 5, 6, 7];
    let next = 8;
    const pairsLeft = next++, i = next++, py = next++;
    const pa = Array.from({ length: R }, () => next++); // row r of X at i
    const pw = Array.from({ length: P }, () => next++); // pair j of W at i
    const i32Locals = next - 8;
    const acc = Array.from({ length: R * P }, () => next++); // (r, j) -> r * P + j
    const w = Array.from({ length: P }, () => next++);
    const x = next++;
    const v128Locals = next - 8 - i32Locals;
    const get = (k) => [0x20, ...uleb(k)], set = (k) => [0x21, ...uleb(k)], tee = (k) => [0x22, ...uleb(k)];
    const int = (v) => [0x41, ...sleb(v)];
    const simd = (op, ...immediates) => [0xfd, ...uleb(op), ...immediates];
    const ADD = 0x6a, SUB = 0x6b, MUL = 0x6c, LOOP = [0x03, 0x40], END = 0x0b, BR_IF_LOOP = [0x0d, 0];
    const LOAD = 0x00, LOAD64_SPLAT = 0x0a, STORE = 0x0b, CONST = 0x0c;
    const F64X2_ADD = 0xf0, F64X2_MUL = 0xf2, DEMOTE = 0x5e, PROMOTE = 0x5f;
    const decrement = (k) => [...get(k), ...int(1), SUB, ...tee(k), ...BR_IF_LOOP]; // loop while --k
    const b = [];
    b.push(...LOOP); // row blocks
    b.push(...get(wOff), ...set(pw[0]), ...get(yOff), ...set(py), ...get(pairBlocks), ...set(pairsLeft));
    b.push(...LOOP); // pair blocks
    for (const k of acc) b.push(...simd(CONST, ...new Array(16).fill(0)), ...set(k));
    b.push(...get(aOff), ...set(pa[0]));
    for (let r = 1; r < R; r++) b.push(...get(pa[r - 1]), ...get(aStride), ADD, ...set(pa[r]));
    for (let j = 1; j < P; j++) b.push(...get(pw[j - 1]), ...get(n), ...int(16), MUL, ADD, ...set(pw[j]));
    b.push(...get(n), ...set(i));
    b.push(...LOOP); // i = 0 .. n - 1
    for (let j = 0; j < P; j++) b.push(...get(pw[j]), ...simd(LOAD, 3, 0), ...set(w[j]));
    for (let r = 0; r < R; r++) {
      b.push(...get(pa[r]), ...simd(LOAD64_SPLAT, 3, 0), ...set(x));
      for (let j = 0; j < P; j++) {
        const k = acc[r * P + j];
        b.push(...get(k), ...get(x), ...get(w[j]), ...simd(F64X2_MUL), ...simd(F64X2_ADD));
        b.push(...simd(DEMOTE), ...simd(PROMOTE), ...set(k));
      }
    }
    for (let r = 0; r < R; r++) b.push(...get(pa[r]), ...int(8), ADD, ...set(pa[r]));
    for (let j = 0; j < P; j++) b.push(...get(pw[j]), ...int(16), ADD, ...set(pw[j]));
    b.push(...decrement(i), END);
    for (let r = 0; r < R; r++) {
      for (let j = 0; j < P; j++) b.push(...get(py), ...get(acc[r * P + j]), ...simd(STORE, 3, ...uleb(16 * j)));
      if (r + 1 < R) b.push(...get(py), ...get(yStride), ADD, ...set(py));
    }
    // back to the block's first row, on to the next pairs; the last pair's pointer ends there
    b.push(...get(py), ...get(yStride), ...int(R - 1), MUL, SUB, ...int(16 * P), ADD, ...set(py));
    b.push(...get(pw[P - 1]), ...set(pw[0]));
    b.push(...decrement(pairsLeft), END);
    b.push(...get(aOff), ...get(aStride), ...int(R), MUL, ADD, ...set(aOff));
    b.push(...get(yOff), ...get(yStride), ...int(R), MUL, ADD, ...set(yOff));
    b.push(...decrement(rowBlocks), END);
    const body = [...wasmVector([[...uleb(i32Locals), I32], [...uleb(v128Locals), V128]]), ...b, END];
    return [...uleb(body.length), ...body];
  }

  function kernelModule() {
    return new Uint8Array([
      ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
      ...wasmSection(1, wasmVector([[0x60, ...wasmVector(new Array(8).fill(I32)), 0]])), // (8 x i32) -> ()
      ...wasmSection(2, wasmVector([[...wasmName("e"), ...wasmName("m"), 0x02, 0x00, 0x01]])), // memory e.m
      ...wasmSection(3, wasmVector([[0]])),
      ...wasmSection(7, wasmVector([[...wasmName("mm"), 0x00, 0]])),
      ...wasmSection(10, wasmVector([kernelBody(ROW_BLOCK, COL_BLOCK / 2)])),
    ]);
  }

  /**
   * A heap of `size` float64 values and matmul(aOff, aStride, wOff, n, yOff, yStride, rows, cols)
   * on it, as matmulJS takes them: WebAssembly where it can, else matmulJS.
   */
  async function createKernel(size) {
    if (typeof WebAssembly === "object") {
      try {
        const bytes = kernelModule();
        if (WebAssembly.validate(bytes)) {
          const memory = new WebAssembly.Memory({ initial: Math.ceil((size * 8) / 65536) });
          const { instance } = await WebAssembly.instantiate(bytes, { e: { m: memory } });
          const mm = instance.exports.mm;
          return {
            kernel: "webassembly",
            heap: new Float64Array(memory.buffer, 0, size), // the memory never grows: the view stays valid
            matmul: (aOff, aStride, wOff, n, yOff, yStride, rows, cols) =>
              mm(8 * aOff, 8 * aStride, 8 * wOff, n, 8 * yOff, 8 * yStride, rows / ROW_BLOCK, cols / COL_BLOCK),
          };
        }
      } catch (error) {
        // e.g. a Content-Security-Policy without 'wasm-unsafe-eval': compute in JavaScript
      }
    }
    const heap = new Float64Array(size);
    return {
      kernel: "javascript",
      heap,
      matmul: (aOff, aStride, wOff, n, yOff, yStride, rows, cols) =>
        matmulJS(heap, aOff, aStride, wOff, n, yOff, yStride, rows, cols),
    };
  }

  /**
   * The engine's model: every nn.Linear weight packed into the heap (see above), the small
   * tensors as float64 copies, and the heap's activation buffers for up to
   * max_position_embeddings tokens, reused by every forward pass.
   */
  async function prepare(checkpoint) {
    const cfg = checkpoint.config;
    const hidden = cfg.hidden_size;
    const qDim = cfg.num_attention_heads * cfg.head_dim;
    const kvDim = cfg.num_key_value_heads * cfg.head_dim;
    const inter = cfg.intermediate_size;
    let size = 0;
    const take = (n) => {
      const offset = size;
      size += roundUp(n, 2); // 16-byte aligned
      return offset;
    };
    const pending = [];
    const linearSlot = (weight, outFeatures, inFeatures) => {
      const spec = { offset: 0, outFeatures, inFeatures, cols: roundUp(outFeatures, COL_BLOCK) };
      spec.offset = take(spec.cols * inFeatures);
      pending.push([spec, weight]);
      return spec;
    };
    const copy = (values) => Float64Array.from(values);
    const layers = checkpoint.layers.map((layer) => ({
      input_layernorm: copy(layer.input_layernorm),
      q_proj: linearSlot(layer.q_proj, qDim, hidden),
      k_proj: linearSlot(layer.k_proj, kvDim, hidden),
      v_proj: linearSlot(layer.v_proj, kvDim, hidden),
      o_proj: linearSlot(layer.o_proj, hidden, qDim),
      post_attention_layernorm: copy(layer.post_attention_layernorm),
      gate_proj: linearSlot(layer.gate_proj, inter, hidden),
      up_proj: linearSlot(layer.up_proj, inter, hidden),
      down_proj: linearSlot(layer.down_proj, hidden, inter),
    }));
    const lm_head = linearSlot(checkpoint.lm_head, cfg.vocab_size, hidden);
    const rows = roundUp(cfg.max_position_embeddings, ROW_BLOCK);
    const q = layers[0].q_proj, kv = layers[0].k_proj, o = layers[0].o_proj, mlp = layers[0].gate_proj;
    const buffers = {
      hidden: take(rows * hidden), // the residual stream (seq, hidden)
      normed: take(rows * hidden), // an RMSNorm's output, a projection's input
      query: take(rows * q.cols), // (seq, heads * head_dim), row stride q.cols
      key: take(rows * kv.cols),
      value: take(rows * kv.cols),
      attended: take(rows * qDim), // attention's output, o_proj's input
      projected: take(rows * Math.max(o.cols, layers[0].down_proj.cols)), // o_proj's or down_proj's
      gate: take(rows * mlp.cols),
      up: take(rows * mlp.cols),
      gated: take(rows * inter), // down_proj's input
      logits: take(rows * lm_head.cols),
      // attention, one head at a time: the keys and the values packed as weights are, the scores
      // and the probabilities (q_len, k_len) with k_len padded, the head's output
      keys: take(rows * cfg.head_dim),
      values: take(rows * roundUp(cfg.head_dim, COL_BLOCK)),
      scores: take(rows * rows),
      probabilities: take(rows * rows),
      headOutput: take(rows * roundUp(cfg.head_dim, COL_BLOCK)),
    };
    const { kernel, heap, matmul } = await createKernel(size);
    for (const [spec, weight] of pending) {
      const n = spec.inFeatures;
      for (let c = 0; c < spec.outFeatures; c++) {
        const base = spec.offset + (c >> 1) * 2 * n + (c & 1);
        for (let i = 0; i < n; i++) heap[base + 2 * i] = weight[c * n + i];
      }
    }
    return {
      ...checkpoint,
      embed_tokens: copy(checkpoint.embed_tokens),
      norm: copy(checkpoint.norm),
      rope: { cos: copy(checkpoint.rope.cos), sin: copy(checkpoint.rope.sin) },
      layers,
      lm_head,
      kernel,
      heap,
      matmul,
      buffers,
    };
  }

  // ---------------------------------------------------------------- the layers

  // The activations live on the float64 heap h (see above), each value a float32: every result
  // written there is rounded with f32() exactly where torch rounds to float32.

  /**
   * nn.Linear without bias on the heap: x (seq, inFeatures) at h[xOff] @ weight.T -> y (seq,
   * outFeatures) at h[yOff], row stride weight.cols. The padding rows of x are zeroed first.
   */
  function linear(m, xOff, weight, seq, yOff) {
    const rows = roundUp(seq, ROW_BLOCK);
    m.heap.fill(0, xOff + seq * weight.inFeatures, xOff + rows * weight.inFeatures);
    m.matmul(xOff, weight.inFeatures, weight.offset, weight.inFeatures, yOff, weight.cols, rows, weight.cols);
  }

  /** LlamaRMSNorm: weight * (x * rsqrt(mean(x^2) + eps)), per row of x (rows, hidden) at h[xOff] -> h[yOff]. */
  function rmsNorm(h, xOff, weight, rows, hidden, eps, yOff) {
    const epsilon = f32(eps); // torch adds the Python float as a float32
    for (let r = 0; r < rows; r++) {
      const xr = xOff + r * hidden;
      const yr = yOff + r * hidden;
      const variance = f32(sumOfSquares(h, xr, hidden) / hidden);
      const scale = f32(1 / f32(Math.sqrt(f32(variance + epsilon)))); // rsqrt: a float32 sqrt, then 1 / it
      for (let i = 0; i < hidden; i++) h[yr + i] = f32(weight[i] * f32(h[xr + i] * scale));
    }
  }

  /**
   * apply_rotary_pos_emb on one projection, in place: x * cos + rotate_half(x) * sin, where
   * rotate_half(x) = cat(-x2, x1) for the halves x1, x2 of each head's vector.
   * x is (seq, numHeads * head_dim) at h[off], row stride `stride`, the layout q_proj / k_proj
   * return; cos and sin are (positions, head_dim / 2), the same for both halves.
   */
  function applyRope(h, off, stride, cos, sin, seq, numHeads, headDim) {
    const half = headDim / 2;
    for (let t = 0; t < seq; t++) {
      for (let head = 0; head < numHeads; head++) {
        const base = off + t * stride + head * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i];
          const s = sin[t * half + i];
          const x1 = h[base + i];
          const x2 = h[base + half + i];
          h[base + i] = f32(f32(x1 * c) + f32(-x2 * s));
          h[base + half + i] = f32(f32(x2 * c) + f32(x1 * s));
        }
      }
    }
  }

  /**
   * eager_attention_forward for all heads of one layer, on the heap: query (seq, heads *
   * head_dim), key and value (seq, kv_heads * head_dim) from buffers.query / key / value, the
   * output (seq, heads * head_dim) to buffers.attended. Returns the weights (heads, q_len, k_len).
   * Both products run on the matmul kernel, with the keys and the values packed as weights.
   */
  function attention(m, seq, queryStride, kvStride, bidirectional) {
    const cfg = m.config;
    const h = m.heap;
    const buf = m.buffers;
    const heads = cfg.num_attention_heads;
    const kvHeads = cfg.num_key_value_heads;
    const headDim = cfg.head_dim;
    const numKeyValueGroups = heads / kvHeads; // repeat_kv: query head h reads key/value head h / groups
    const scaling = f32(1 / Math.sqrt(headDim)); // head_dim ** -0.5, applied in float32
    const weights = new Float32Array(heads * seq * seq); // (heads, q_len, k_len); masked keys stay 0
    const outStride = heads * headDim;
    const rows = roundUp(seq, ROW_BLOCK); // queries, padded; the query buffer's padding rows are 0
    const keys = roundUp(seq, COL_BLOCK); // keys, padded with zero keys
    const dims = roundUp(headDim, COL_BLOCK);
    const { scores, probabilities } = buf;
    h.fill(0, probabilities, probabilities + rows * keys); // masked keys and padding stay 0
    let packed = -1;
    for (let head = 0; head < heads; head++) {
      const kvh = Math.floor(head / numKeyValueGroups);
      if (kvh !== packed) {
        // key_states of this head as a weight (k_len, head_dim) and value_states^T as one
        // (head_dim, k_len), packed in pairs (see the matmul kernel), padded with zeros
        h.fill(0, buf.keys, buf.keys + keys * headDim);
        h.fill(0, buf.values, buf.values + dims * seq);
        for (let j = 0; j < seq; j++) {
          const k = buf.key + j * kvStride + kvh * headDim;
          const v = buf.value + j * kvStride + kvh * headDim;
          const kp = buf.keys + (j >> 1) * 2 * headDim + (j & 1);
          const vp = buf.values + 2 * j;
          for (let d = 0; d < headDim; d++) {
            h[kp + 2 * d] = h[k + d];
            h[vp + (d >> 1) * 2 * seq + (d & 1)] = h[v + d];
          }
        }
        packed = kvh;
      }
      // query_states @ key_states^T: (q_len, k_len), each score a chain of float32 fused
      // multiply-adds over head_dim in order, as the projections sum. The causal mask's keys are
      // computed too (it is quicker than skipping them) and then left out.
      m.matmul(buf.query + head * headDim, queryStride, buf.keys, headDim, scores, keys, rows, keys);
      for (let i = 0; i < seq; i++) {
        const row = (head * seq + i) * seq;
        const lastKey = bidirectional ? seq - 1 : i; // the causal mask: query i sees keys 0..i
        let max = -Infinity;
        for (let j = 0; j <= lastKey; j++) {
          const score = f32(h[scores + i * keys + j] * scaling);
          weights[row + j] = score;
          if (score > max) max = score;
        }
        // softmax(dim=-1, dtype=float32) as ATen computes it: exp(score - max), their sum over
        // the whole row (masked zeros included, which decides how the lanes add), times 1 / sum
        for (let j = 0; j <= lastKey; j++) weights[row + j] = expf(f32(weights[row + j] - max));
        const inverse = f32(1 / vectorSum16(weights, row, seq));
        const p = probabilities + i * keys;
        for (let j = 0; j <= lastKey; j++) {
          const weight = f32(weights[row + j] * inverse);
          weights[row + j] = weight;
          h[p + j] = weight;
        }
      }
      // attn_output = attn_weights @ value_states: for each of the head_dim outputs a chain of
      // fused multiply-adds over the keys in order, from 0, each step rounded to float32. The
      // masked keys come last in each chain and add 0 * value, which changes no sum (the sum
      // starts at +0, so it is never -0, and the values are finite).
      m.matmul(probabilities, keys, buf.values, seq, buf.headOutput, dims, rows, dims);
      for (let i = 0; i < seq; i++) {
        const out = buf.attended + i * outStride + head * headDim;
        const from = buf.headOutput + i * dims;
        for (let d = 0; d < headDim; d++) h[out + d] = h[from + d];
      }
    }
    return weights;
  }

  /** act_fn(gate) * up, elementwise (LlamaMLP before down_proj): SiLU is x / (1 + exp(-x)). */
  function gatedSilu(h, gate, up, stride, seq, inter, out) {
    for (let t = 0; t < seq; t++) {
      for (let i = 0; i < inter; i++) {
        const g = h[gate + t * stride + i];
        h[out + t * inter + i] = f32(f32(g / f32(1 + expf(-g))) * h[up + t * stride + i]);
      }
    }
  }

  /** The residual connection: x += y for rows of width `width`, y with row stride `stride`. */
  function addInPlace(h, x, y, stride, seq, width) {
    for (let t = 0; t < seq; t++) {
      for (let i = 0; i < width; i++) h[x + t * width + i] = f32(h[x + t * width + i] + h[y + t * stride + i]);
    }
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
   * (new arrays each call: the heap's buffers are reused, the results are the caller's)
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
    const vocab = cfg.vocab_size;
    if (seq < 1 || seq > cfg.max_position_embeddings) {
      throw new Error(`attnvizDemo: forward takes 1 to ${cfg.max_position_embeddings} tokens; got ${seq}.`);
    }
    ids.forEach((id) => {
      if (!(id >= 0 && id < vocab)) throw new Error(`attnvizDemo: token id ${id} is outside the vocabulary.`);
    });
    const h = m.heap;
    const buf = m.buffers;

    // inputs_embeds: (seq, hidden)
    ids.forEach((id, t) => h.set(m.embed_tokens.subarray(id * hidden, (id + 1) * hidden), buf.hidden + t * hidden));

    const attentions = [];
    for (const layer of m.layers) {
      // self-attention block
      rmsNorm(h, buf.hidden, layer.input_layernorm, seq, hidden, cfg.rms_norm_eps, buf.normed);
      linear(m, buf.normed, layer.q_proj, seq, buf.query); // (seq, heads * head_dim)
      linear(m, buf.normed, layer.k_proj, seq, buf.key); // (seq, kv_heads * head_dim)
      linear(m, buf.normed, layer.v_proj, seq, buf.value); // (seq, kv_heads * head_dim)
      if (!noRope) {
        // NoRoPE's cos = 1, sin = 0 would give q * 1 + rotate_half(q) * 0 = q: no rotation at all
        applyRope(h, buf.query, layer.q_proj.cols, m.rope.cos, m.rope.sin, seq, heads, headDim);
        applyRope(h, buf.key, layer.k_proj.cols, m.rope.cos, m.rope.sin, seq, kvHeads, headDim);
      }
      attentions.push(attention(m, seq, layer.q_proj.cols, layer.k_proj.cols, bidirectional)); // (heads, q_len, k_len)
      linear(m, buf.attended, layer.o_proj, seq, buf.projected);
      addInPlace(h, buf.hidden, buf.projected, layer.o_proj.cols, seq, hidden);

      // MLP block: down_proj(silu(gate_proj(x)) * up_proj(x))
      rmsNorm(h, buf.hidden, layer.post_attention_layernorm, seq, hidden, cfg.rms_norm_eps, buf.normed);
      linear(m, buf.normed, layer.gate_proj, seq, buf.gate); // (seq, intermediate)
      linear(m, buf.normed, layer.up_proj, seq, buf.up); // (seq, intermediate)
      gatedSilu(h, buf.gate, buf.up, layer.gate_proj.cols, seq, inter, buf.gated);
      linear(m, buf.gated, layer.down_proj, seq, buf.projected);
      addInPlace(h, buf.hidden, buf.projected, layer.down_proj.cols, seq, hidden);
    }
    rmsNorm(h, buf.hidden, m.norm, seq, hidden, cfg.rms_norm_eps, buf.normed);
    linear(m, buf.normed, m.lm_head, seq, buf.logits);
    const logits = new Float32Array(seq * vocab); // (seq, vocab)
    for (let t = 0; t < seq; t++) {
      logits.set(h.subarray(buf.logits + t * m.lm_head.cols, buf.logits + t * m.lm_head.cols + vocab), t * vocab);
    }
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
    /** Which matmul runs: "webassembly", or "javascript" where WebAssembly SIMD is missing (same bits). */
    get kernel() {
      return loaded().kernel;
    },
    get vocab() {
      return loaded().vocab.slice();
    },
  };
})(globalThis);
