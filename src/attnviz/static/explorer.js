// The kernel-free attention explorer (attnviz.static_view).
//
// The page embeds the weights of every variant, layer and head as JSON; this script draws the
// chosen one on a canvas. It is shipped as package data and inlined into each view, so a page
// works offline and opened from disk. Defined once per page, however many views it holds.
//
// Data layout (see attnviz.view.static_data):
//   data.tokens: [token, ...]
//   data.variants[name][layer][head][query][key]: weight in [0, 1], or -1 where masked
// Variant names are "<mask> + <positions>", e.g. "causal + RoPE".
window.attnvizExplorer = window.attnvizExplorer || (function () {
  "use strict";

  const DEFAULT_MASKED_COLOR = "#d9d9d9"; // attnviz.plot.MASKED_COLOR; the page passes its own
  const LABEL_WIDTH = 60; // pixels left of and above the grid for token labels

  // viridis, five stops, interpolated linearly
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function viridis(v) {
    const x = Math.max(0, Math.min(1, v)) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    const c = VIRIDIS[i].map((s, k) => Math.round(s + f * (VIRIDIS[i + 1][k] - s)));
    return "rgb(" + c.join(",") + ")";
  }

  // The state the controls describe: which variant, layer and head to draw.
  function readControls(root) {
    const checked = (name) => root.querySelector('input[name="' + root.id + "-" + name + '"]:checked').value;
    return {
      variant: checked("mask") + " + " + checked("pos"),
      layer: +root.querySelector(".layer").value,
      head: +root.querySelector(".head").value,
    };
  }

  // weights: [query][key], -1 = masked. Rows are queries, columns keys.
  function drawHeatmap(canvas, weights, tokens, scaleMax, maskedColor) {
    const ctx = canvas.getContext("2d");
    const n = weights.length, cell = (canvas.width - LABEL_WIDTH) / n;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) {
        const w = weights[q][k];
        ctx.fillStyle = w < 0 ? maskedColor || DEFAULT_MASKED_COLOR : viridis(w / (scaleMax || 1));
        ctx.fillRect(LABEL_WIDTH + k * cell, LABEL_WIDTH + q * cell, Math.ceil(cell), Math.ceil(cell));
      }
    }
    ctx.fillStyle = "#000";
    ctx.font = Math.min(11, cell) + "px sans-serif";
    for (let i = 0; i < n; i++) {
      ctx.textAlign = "right";
      ctx.fillText(tokens[i], LABEL_WIDTH - 3, LABEL_WIDTH + (i + 0.75) * cell);
      ctx.save();
      ctx.translate(LABEL_WIDTH + (i + 0.75) * cell, LABEL_WIDTH - 3);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(tokens[i], 0, 0);
      ctx.restore();
    }
  }

  function mount(root) {
    const data = JSON.parse(root.querySelector("script.attnviz-data").textContent);
    const canvas = root.querySelector("canvas");
    const layerSelect = root.querySelector(".layer"), headSelect = root.querySelector(".head");
    const first = data.variants[Object.keys(data.variants)[0]];
    for (let l = 0; l < first.length; l++) layerSelect.add(new Option(l, l));
    for (let h = 0; h < first[0].length; h++) headSelect.add(new Option(h, h));

    function draw() {
      const state = readControls(root);
      const weights = data.variants[state.variant][state.layer][state.head];
      let max = 0;
      weights.forEach((row) => row.forEach((x) => { if (x > max) max = x; }));
      drawHeatmap(canvas, weights, data.tokens, max, data.masked_color);
      root.querySelector(".caption").textContent = state.variant + ", layer " + state.layer + ", head " +
        state.head + ": rows are queries, columns keys; grey cells are masked; colour scale 0 to " + max.toFixed(3);
      canvas.dataset.variant = state.variant;
    }

    root.querySelectorAll("input, select").forEach((el) => el.addEventListener("change", draw));
    draw();
  }

  return { mount, viridis, drawHeatmap };
})();
