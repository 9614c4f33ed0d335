// The kernel-free attention explorer (chapter 9; attnviz.live_view and attnviz.static_view).
//
// One heatmap of a layer's head (or all its heads) for the four variants: causal or
// bidirectional, RoPE or NoRoPE. Two sources feed it:
//   "live":     the demo model itself, run in the page by attnviz-demo-model.js (globalThis.attnvizDemo)
//               on whatever the reader types; each (text, variant) is computed once and kept.
//   "embedded": precomputed weights of one input, as JSON in the page (attnviz.view.static_data):
//               data.variants[name][layer][head][query][key], -1 where masked.
//
// The parts, each with one job, so that the file can grow:
//   colours   weight and change scales, as lookup tables and CSS gradients   (no DOM)
//   variants  the four names and what to notice in each                      (no DOM)
//   results   the sources, reduced to one shape: Result                      (no DOM)
//   layout    where each cell sits on the canvas, and which cell is at (x, y) (no DOM)
//   draw      paints a layout on a 2D context                                 (canvas only)
//   view      the controls, the readout and the predictions: mount(root)      (the DOM)
//
// A Result is one input under one variant:
//   {tokens: [...], n, heads, layers: [Float32Array (heads, n, n)], mask: Uint8Array (n, n), 1 = masked,
//    predictions: [{token, p}] per position, or null when the source has no logits}
// Defined once per page, however many views it holds: inline in each view (static_view, and
// live_view in Jupyter), or loaded once as _static/attnviz-explorer.js (the book's pages).
(function (global) {
  "use strict";
  if (global.attnvizExplorer) return;

  // ---------------------------------------------------------------- colours

  // matplotlib's viridis (17 samples) and RdBu_r (its 11 colours), the book's figures' maps,
  // interpolated linearly: within 6 of matplotlib's values in each channel
  const VIRIDIS = [[68, 1, 84], [72, 24, 106], [71, 45, 123], [66, 64, 134], [59, 82, 139], [51, 99, 141],
    [44, 114, 142], [38, 130, 142], [33, 145, 140], [31, 160, 136], [40, 174, 128], [63, 188, 115],
    [94, 201, 98], [132, 212, 75], [173, 220, 48], [216, 226, 25], [253, 231, 37]];
  const RDBU_R = [[5, 48, 97], [32, 101, 171], [67, 147, 195], [144, 196, 221], [209, 229, 240],
    [247, 246, 246], [253, 219, 199], [243, 164, 129], [214, 96, 77], [177, 24, 43], [103, 0, 31]];
  const MASKED = [217, 217, 217]; // attnviz.plot.MASKED_COLOR, #d9d9d9

  function ramp(stops, x) {
    const t = Math.max(0, Math.min(1, x)) * (stops.length - 1);
    const i = Math.min(Math.floor(t), stops.length - 2), f = t - i;
    return stops[i].map((s, c) => Math.round(s + f * (stops[i + 1][c] - s)));
  }

  // A scale maps a value to [r, g, b] through a table: one fixed range for every view. 257
  // entries, so that the middle of a diverging scale (no change) is an entry of its own.
  function makeScale(stops, min, max) {
    const table = [];
    for (let i = 0; i <= 256; i++) table.push(ramp(stops, i / 256));
    return {
      min, max, stops,
      rgb: (v) => table[Math.round(256 * Math.max(0, Math.min(1, (v - min) / (max - min))))],
      gradient: () => "linear-gradient(to right, " +
        stops.map((s, i) => `rgb(${s}) ${(100 * i / (stops.length - 1)).toFixed(1)}%`).join(", ") + ")",
    };
  }
  const WEIGHT_SCALE = makeScale(VIRIDIS, 0, 1);
  const CHANGE_SCALE = makeScale(RDBU_R, -1, 1);

  // ---------------------------------------------------------------- variants

  const VARIANTS = {
    "causal + RoPE": { bidirectional: false, noRope: false },
    "bidirectional + RoPE": { bidirectional: true, noRope: false },
    "causal + NoRoPE": { bidirectional: false, noRope: true },
    "bidirectional + NoRoPE": { bidirectional: true, noRope: true },
  };
  const BASELINE = "causal + RoPE"; // the model as trained: "before" in the after - before view
  const NOTICE = {
    "causal + RoPE": "As trained. Layer 0, head 3 looks one token back (the bright line just below " +
      "the diagonal); after the |, the model predicts the next letter of the copy.",
    "bidirectional + RoPE": "Every query also sees the later tokens now: the grey triangle fills. " +
      "The model never learned to use them, and its predictions go wrong.",
    "causal + NoRoPE": "No positions: a head can match letters but not offsets. Layer 0, head 3 " +
      "loses its one-back line and puts its weight on <bos>; the copy fails.",
    "bidirectional + NoRoPE": "Neither order nor positions: the model sees a bag of letters. A " +
      "repeated letter gets the very same row and the very same prediction.",
  };

  function variantName(bidirectional, noRope) {
    return (bidirectional ? "bidirectional" : "causal") + " + " + (noRope ? "NoRoPE" : "RoPE");
  }

  // ---------------------------------------------------------------- results

  function causalMask(n, bidirectional) {
    const mask = new Uint8Array(n * n);
    if (!bidirectional) for (let q = 0; q < n; q++) for (let k = q + 1; k < n; k++) mask[q * n + k] = 1;
    return mask;
  }

  // logits (n, vocab) -> the most likely next token after each position, and its probability
  function predictions(logits, n, vocab) {
    const size = vocab.length, result = [];
    for (let t = 0; t < n; t++) {
      let best = 0, max = -Infinity, sum = 0;
      for (let v = 0; v < size; v++) if (logits[t * size + v] > max) { max = logits[t * size + v]; best = v; }
      for (let v = 0; v < size; v++) sum += Math.exp(logits[t * size + v] - max);
      result.push({ token: vocab[best], p: 1 / sum });
    }
    return result;
  }

  // The live source: the demo model on any text. Results are kept per (tokens, variant), so a
  // layer or head change, or a flip back to a variant seen before, runs no forward pass.
  function liveSource(demo, keep = 32) {
    const cache = new Map();
    const config = demo.config, vocab = demo.vocab;
    return {
      kind: "live",
      layers: config.num_hidden_layers,
      heads: config.num_attention_heads,
      result(text, name) {
        const { tokens, ids } = demo.tokenize(text.toLowerCase()); // the vocabulary is lowercase
        const key = name + "\n" + tokens.join(" ");
        if (cache.has(key)) return cache.get(key);
        const { attentions, logits } = demo.forward(ids, VARIANTS[name]);
        const n = ids.length;
        const result = {
          tokens, n, heads: config.num_attention_heads, layers: attentions,
          mask: causalMask(n, VARIANTS[name].bidirectional), predictions: predictions(logits, n, vocab),
        };
        cache.set(key, result);
        if (cache.size > keep) cache.delete(cache.keys().next().value); // the oldest
        return result;
      },
      clear: () => cache.clear(),
    };
  }

  // The embedded source: the variants of one fixed input; the text is ignored.
  function embeddedSource(data) {
    const results = {};
    for (const [name, layers] of Object.entries(data.variants)) {
      const n = data.tokens.length, heads = layers[0].length;
      const mask = new Uint8Array(n * n);
      layers[0][0].forEach((row, q) => row.forEach((w, k) => { if (w < 0) mask[q * n + k] = 1; }));
      results[name] = {
        tokens: data.tokens, n, heads, mask, predictions: null,
        layers: layers.map((layer) => Float32Array.from(layer.flat(2), (w) => Math.max(w, 0))),
      };
    }
    const first = Object.values(results)[0];
    return {
      kind: "embedded",
      layers: first.layers.length,
      heads: first.heads,
      result: (text, name) => results[name],
      clear: () => {},
    };
  }

  // after - before for one head, each (n, n); a masked cell counts as weight 0
  function difference(after, before, head, n) {
    const a = after.subarray(head * n * n, (head + 1) * n * n), b = before.subarray(head * n * n, (head + 1) * n * n);
    return a.map((w, i) => w - b[i]);
  }

  // How many next tokens the model gets right: from the first "|" on (the copy) when there is one.
  function scoreCopy(tokens, predicted) {
    const start = Math.max(0, tokens.indexOf("|"));
    let right = 0, total = 0;
    for (let t = start; t < tokens.length - 1; t++, total++) if (predicted[t].token === tokens[t + 1]) right++;
    return { right, total, copy: start > 0 };
  }

  // ---------------------------------------------------------------- layout

  // Where the cells go: one panel per head shown, each an n x n grid with token labels on two
  // sides. Only arithmetic, so hit-testing and drawing agree by construction.
  function layout(width, n, heads, labelled = true) {
    const columns = heads.length > 1 ? 2 : 1, gap = heads.length > 1 ? 10 : 0;
    const title = heads.length > 1 ? 16 : 0;
    const panel = (width - gap * (columns - 1)) / columns;
    const margin = heads.length > 1 ? 30 : 38; // room for "<bos>" beside the grid and above it
    const cell = Math.max(1, (panel - margin) / n);
    const font = Math.min(heads.length > 1 ? 9 : 11, Math.max(8, cell));
    const every = labelled ? Math.ceil((font * 0.9) / cell) : 0; // a label per cell, or per few cells
    const panels = heads.map((head, i) => ({
      head,
      x: (i % columns) * (panel + gap) + margin,
      y: Math.floor(i / columns) * (panel + title + gap) + title + margin,
    }));
    const rows = Math.ceil(heads.length / columns);
    return { width, height: rows * (panel + title) + (rows - 1) * gap, n, cell, font, every, margin, panels };
  }

  function cellAt(geometry, x, y) {
    for (const p of geometry.panels) {
      const k = Math.floor((x - p.x) / geometry.cell), q = Math.floor((y - p.y) / geometry.cell);
      if (q >= 0 && k >= 0 && q < geometry.n && k < geometry.n) return { head: p.head, q, k };
    }
    return null;
  }

  // ---------------------------------------------------------------- draw

  let scratch = null; // one small canvas, reused: n x n pixels, scaled up without smoothing

  function paintGrid(ctx, geometry, panel, values, mask, scale) {
    const n = geometry.n;
    if (!scratch) scratch = ctx.canvas.ownerDocument.createElement("canvas");
    scratch.width = scratch.height = n;
    const sctx = scratch.getContext("2d"), image = sctx.createImageData(n, n);
    for (let i = 0; i < n * n; i++) {
      const c = mask(i) ? MASKED : scale.rgb(values[i]);
      image.data.set(c, 4 * i);
      image.data[4 * i + 3] = 255;
    }
    sctx.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(scratch, panel.x, panel.y, n * geometry.cell, n * geometry.cell);
  }

  // Token labels left of the rows (queries) and above the columns (keys); the pointed cell's two in bold.
  function paintLabels(ctx, geometry, panel, tokens, highlight) {
    const { cell, every } = geometry;
    if (!every) return;
    ctx.textBaseline = "middle";
    for (let i = 0; i < tokens.length; i++) {
      const row = highlight && i === highlight.q, column = highlight && i === highlight.k;
      if (i % every === 0 || row) {
        ctx.font = (row ? "bold " : "") + geometry.font + "px sans-serif";
        ctx.fillStyle = row ? "#000" : "#333";
        ctx.textAlign = "right";
        ctx.fillText(tokens[i], panel.x - 3, panel.y + (i + 0.5) * cell);
      }
      if (i % every === 0 || column) {
        ctx.font = (column ? "bold " : "") + geometry.font + "px sans-serif";
        ctx.fillStyle = column ? "#000" : "#333";
        ctx.save();
        ctx.translate(panel.x + (i + 0.5) * cell, panel.y - 3);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(tokens[i], 0, 0);
        ctx.restore();
      }
    }
  }

  // picture: {geometry, tokens, grids: [{head, values, mask(i)}], scale, titles, highlight}
  function paint(ctx, picture) {
    const { geometry, highlight } = picture;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, geometry.width, geometry.height);
    geometry.panels.forEach((panel, i) => {
      const grid = picture.grids[i];
      paintGrid(ctx, geometry, panel, grid.values, grid.mask, picture.scale);
      const mine = highlight && highlight.head === panel.head ? highlight : null;
      paintLabels(ctx, geometry, panel, picture.tokens, mine);
      if (geometry.panels.length > 1) {
        ctx.font = "bold 11px sans-serif";
        ctx.fillStyle = "#000";
        ctx.textAlign = "left";
        ctx.textBaseline = "alphabetic";
        ctx.fillText("head " + panel.head, panel.x - geometry.margin, panel.y - geometry.margin - 4);
      }
      if (mine) {
        const c = geometry.cell;
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#000";
        ctx.strokeRect(panel.x + mine.k * c - 1, panel.y + mine.q * c - 1, c + 2, c + 2);
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1;
        ctx.strokeRect(panel.x + mine.k * c + 0.5, panel.y + mine.q * c + 0.5, c - 1, c - 1);
      }
    });
  }

  // ---------------------------------------------------------------- view

  const quote = (token) => "\u201c" + token + "\u201d";

  function readControls(root) {
    const checked = (name) => root.querySelector(`input[name="${root.id}-${name}"]:checked`).value;
    const head = root.querySelector("select.head").value;
    return {
      text: root.querySelector("input.text").value,
      variant: variantName(checked("mask") === "bidirectional", checked("pos") === "NoRoPE"),
      layer: +root.querySelector("select.layer").value,
      head: head === "all" ? "all" : +head,
      change: root.querySelector("input.change").checked,
    };
  }

  function fillSelect(select, values, chosen) {
    select.replaceChildren(...values.map(([value, label]) => new Option(label, value)));
    select.value = String(values.some(([v]) => String(v) === String(chosen)) ? chosen : values[0][0]);
  }

  function legend(root, change) {
    const scale = change ? CHANGE_SCALE : WEIGHT_SCALE;
    root.querySelector(".colourbar .ramp").style.background = scale.gradient();
    const ticks = change ? ["\u22121", "0", "+1"] : ["0", "0.5", "1"];
    root.querySelectorAll(".colourbar .ticks span").forEach((span, i) => { span.textContent = ticks[i]; });
    root.querySelector(".colourbar .what").textContent = change
      ? "change in weight against " + BASELINE + " (blue: less, red: more)"
      : "attention weight";
  }

  function showPredictions(root, result) {
    const box = root.querySelector(".predictions");
    box.hidden = !result.predictions;
    if (!result.predictions) return;
    const { tokens, predictions: predicted } = result;
    const cells = tokens.map((token, t) => {
      const next = tokens[t + 1], guess = predicted[t];
      const cell = document.createElement("span");
      cell.className = "position " + (next === undefined ? "last" : guess.token === next ? "right" : "wrong");
      cell.title = `after ${quote(token)} (position ${t}): ${quote(guess.token)}, p = ${guess.p.toFixed(2)}` +
        (next === undefined ? "" : `; next is ${quote(next)}`);
      cell.append(Object.assign(document.createElement("b"), { textContent: token }),
        Object.assign(document.createElement("span"), { textContent: guess.token }));
      return cell;
    });
    box.querySelector(".strip").replaceChildren(...cells);
    const score = scoreCopy(tokens, predicted);
    box.querySelector(".score").textContent = score.total
      ? `${score.right} of ${score.total} next tokens right` + (score.copy ? " from the | on (the copy)" : "")
      : "type more letters to see predictions";
    box.dataset.right = score.right;
    box.dataset.total = score.total;
  }

  function mount(root) {
    const canvas = root.querySelector("canvas.heatmap");
    const readout = root.querySelector(".readout");
    const status = root.querySelector(".status");
    const dataScript = root.querySelector("script.attnviz-data");
    let source = null, shown = null, highlight = null, plotWidth = 0;
    root.querySelector(".attnviz-body").hidden = false; // hidden where no script runs

    function say(text, isError) {
      status.textContent = text;
      status.classList.toggle("error", Boolean(isError));
      status.hidden = !text;
    }

    // Compute the current controls' picture; a layer or head change reuses the cached result.
    function update() {
      const state = readControls(root);
      let result, before;
      try {
        result = source.result(state.text, state.variant);
        before = state.change ? source.result(state.text, BASELINE) : null;
      } catch (error) {
        say(String(error.message || error).replace(/^attnvizDemo: /, ""), true);
        root.dataset.state = "error";
        return;
      }
      say("");
      const heads = state.head === "all" ? [...Array(result.heads).keys()] : [state.head];
      const n = result.n, weights = result.layers[state.layer];
      const grids = heads.map((head) => ({
        head,
        values: before ? difference(weights, before.layers[state.layer], head, n) : weights.subarray(head * n * n, (head + 1) * n * n),
        // after - before: a cell is grey only where both variants mask it
        mask: before ? (i) => result.mask[i] && before.mask[i] : (i) => result.mask[i],
      }));
      const previous = shown;
      shown = { state, result, before, heads, grids };
      highlight = null;
      redraw();
      // the parts a layer or head change leaves as they are are not rewritten
      if (!previous || previous.state.change !== state.change) legend(root, state.change);
      if (!previous || previous.result !== result) showPredictions(root, result);
      root.querySelector(".notice").textContent = NOTICE[state.variant] || "";
      readout.textContent = "Point at a cell (or tap it) to read its weight.";
      Object.assign(root.dataset, {
        state: "ready", variant: state.variant, layer: state.layer, head: state.head,
        mode: state.change ? "change" : "weights", tokens: n,
      });
      canvas.dataset.variant = state.variant;
      prefetch(state.text);
      canvas.setAttribute("aria-label", `Attention of layer ${state.layer}, ${state.head === "all" ? "all heads" :
        "head " + state.head}, ${state.variant}${before ? ", change against " + BASELINE : ""}, ${n} tokens`);
    }

    // After a change, the other variants of the same text are computed while the page is idle,
    // so that a flip of mask or positions usually finds its result kept (no forward pass then).
    let ticket = 0;
    function prefetch(text) {
      if (source.kind !== "live" || !root.attnviz.prefetch) return;
      const idle = global.requestIdleCallback || ((work) => setTimeout(work, 30));
      const mine = ++ticket, names = Object.keys(VARIANTS);
      const next = () => {
        if (mine !== ticket || !names.length) return; // a newer change has its own
        try { source.result(text, names.shift()); } catch (error) { return; } // the view shows the error
        idle(next);
      };
      idle(next);
    }

    function redraw() {
      if (!shown) return;
      // the column's width, as last measured: reading clientWidth here would force a layout
      if (!plotWidth) plotWidth = root.querySelector(".plot").clientWidth;
      const width = Math.min(plotWidth || 320, +root.dataset.size || 520);
      const geometry = layout(width, shown.result.n, shown.heads);
      const ratio = global.devicePixelRatio || 1;
      const pixels = [Math.round(geometry.width * ratio), Math.round(geometry.height * ratio)];
      if (canvas.width !== pixels[0] || canvas.height !== pixels[1]) { // a resize clears the canvas' memory
        [canvas.width, canvas.height] = pixels;
        canvas.style.width = geometry.width + "px";
        canvas.style.height = geometry.height + "px";
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      paint(ctx, {
        geometry, highlight, tokens: shown.result.tokens, grids: shown.grids,
        scale: shown.state.change ? CHANGE_SCALE : WEIGHT_SCALE,
      });
      shown.geometry = geometry;
    }

    function point(event) {
      if (!shown || !shown.geometry) return;
      const box = canvas.getBoundingClientRect();
      const cell = cellAt(shown.geometry, event.clientX - box.left, event.clientY - box.top);
      if (!cell) return;
      const same = highlight && highlight.head === cell.head && highlight.q === cell.q && highlight.k === cell.k;
      if (same && event.type !== "click") return; // the pointer moved within the cell
      highlight = cell;
      redraw();
      readout.textContent = describe(cell);
      if (event.type === "click" && shown.state.head === "all") {
        root.querySelector("select.head").value = cell.head; // a tap on a small map opens that head
      }
    }

    function describe({ head, q, k }) {
      const { state, result, before } = shown, n = result.n, i = q * n + k;
      const where = `layer ${state.layer}, head ${head}: query ${q} ${quote(result.tokens[q])} \u2192 key ${k} ${quote(result.tokens[k])}`;
      const weight = result.layers[state.layer][head * n * n + i];
      const value = (masked, w) => (masked ? "masked" : w.toFixed(3));
      if (!before) return where + ": " + (result.mask[i] ? "masked (a causal query does not see later keys)" : "weight " + weight.toFixed(3));
      if (result.mask[i] && before.mask[i]) return where + ": masked in both";
      const old = before.layers[state.layer][head * n * n + i];
      const delta = weight - old;
      return `${where}: ${value(result.mask[i], weight)} (was ${value(before.mask[i], old)} under ${BASELINE}), ` +
        `change ${delta >= 0 ? "+" : "\u2212"}${Math.abs(delta).toFixed(3)}`;
    }

    function start(made) {
      source = made;
      fillSelect(root.querySelector("select.layer"), [...Array(source.layers).keys()].map((l) => [l, l]), root.dataset.layer);
      fillSelect(root.querySelector("select.head"),
        [...[...Array(source.heads).keys()].map((h) => [h, h]), ["all", "all heads"]], root.dataset.head);
      root.querySelector(".live").hidden = source.kind !== "live";
      root.querySelectorAll("input, select").forEach((el) => el.addEventListener(el.type === "text" ? "input" : "change", () => {
        if (el.classList.contains("head") || el.classList.contains("layer")) highlight = null;
        update();
      }));
      canvas.addEventListener("pointermove", point);
      canvas.addEventListener("click", (event) => { point(event); if (shown && shown.state.head === "all") update(); });
      canvas.addEventListener("pointerleave", (event) => {
        if (event.pointerType === "mouse") { highlight = null; redraw(); } // a tap's highlight stays
      });
      if (global.ResizeObserver) {
        new ResizeObserver((entries) => {
          const width = entries[entries.length - 1].contentRect.width;
          if (width && width !== plotWidth) { plotWidth = width; redraw(); }
        }).observe(root.querySelector(".plot"));
      }
      update();
    }

    // for tests and benchmarks: run the controls again, forget the kept results, find a cell on screen
    root.attnviz = {
      update,
      prefetch: true, // false: every change of variant runs the model (benchmarks)
      clear: () => source && source.clear(),
      where(head, q, k) {
        const panel = shown.geometry.panels.find((p) => p.head === head), c = shown.geometry.cell;
        const box = canvas.getBoundingClientRect();
        return { x: box.left + panel.x + (k + 0.5) * c, y: box.top + panel.y + (q + 0.5) * c };
      },
    };
    if (dataScript) {
      start(embeddedSource(JSON.parse(dataScript.textContent)));
      return;
    }
    // the page's scripts have run (the mount waits for the document): the model is there, or not
    root.dataset.state = "loading";
    say("Loading the demo model (1.5 MB, once)\u2026");
    Promise.resolve()
      .then(() => {
        if (!global.attnvizDemo) throw new Error(root.querySelector(".missing").textContent);
        return global.attnvizDemo.ready;
      })
      .then(() => start(liveSource(global.attnvizDemo)))
      .catch((error) => {
        root.dataset.state = "error";
        say(String(error.message || error).replace(/^attnvizDemo: /, ""), true);
      });
  }

  global.attnvizExplorer = {
    mount,
    // the parts without DOM, for tests and for other views
    core: { VARIANTS, BASELINE, NOTICE, WEIGHT_SCALE, CHANGE_SCALE, variantName, liveSource, embeddedSource,
      difference, predictions, scoreCopy, layout, cellAt },
  };
})(globalThis);
