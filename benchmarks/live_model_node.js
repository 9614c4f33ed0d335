/*
 * The demo model's forward pass in Node (issue 18): p50/p95 of tokenize + forward at 8, 32 and
 * 64 tokens, the four variants in turn as a reader flipping controls would, the lengths taking
 * turns in rounds (a shared machine's speed drifts over seconds). Chromium's V8 runs the same
 * code; benchmarks/live_model.py measures it there, with the page.
 *
 *   PYTHONPATH=src .venv/bin/python -c "import attnviz.weblive as w; print(w.weights_script())" > /tmp/w.js
 *   node benchmarks/live_model_node.js /tmp/w.js [engine.js] [repeats]
 *   ATTNVIZ_NO_WASM=1 node benchmarks/live_model_node.js ...   (the JavaScript fallback)
 */
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const vm = require("vm");

const [weightsPath, enginePath = path.join(__dirname, "../src/attnviz/static/demo_model.js"), repeatsArg = "200"] =
  process.argv.slice(2);
if (!weightsPath) {
  console.error("usage: node benchmarks/live_model_node.js WEIGHTS.js [ENGINE.js] [REPEATS]");
  process.exit(2);
}
// ATTNVIZ_NO_WASM=1: as in a browser without WebAssembly SIMD (the engine's JavaScript matmul)
if (process.env.ATTNVIZ_NO_WASM) WebAssembly.validate = () => false;
vm.runInThisContext(fs.readFileSync(weightsPath, "utf8"), { filename: weightsPath });
vm.runInThisContext(fs.readFileSync(enginePath, "utf8"), { filename: enginePath });
const demo = globalThis.attnvizDemo;
const LENGTHS = [8, 32, 64];
const VARIANTS = [[false, false], [true, false], [false, true], [true, true]];
const repeats = Number(repeatsArg);
const ROUND = 10;

function text(tokens, seed) {
  let s = "";
  for (let i = 0; i < tokens - 1; i++) s += "abcdefghijklmnopqrstuvwxyz|"[(i * 7 + seed * 13) % 27];
  return s;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

(async () => {
  await demo.ready;
  let call = 0;
  const once = (tokens) => {
    const [bidirectional, noRope] = VARIANTS[call % 4];
    const { ids } = demo.tokenize(text(tokens, call++));
    const t0 = performance.now();
    demo.forward(ids, { bidirectional, noRope });
    return performance.now() - t0;
  };
  for (let k = 0; k < 60; k++) for (const n of LENGTHS) once(n); // warm-up: let V8 optimise
  const times = Object.fromEntries(LENGTHS.map((n) => [n, []]));
  while (times[LENGTHS[0]].length < repeats) {
    for (const n of LENGTHS) for (let k = 0; k < ROUND; k++) times[n].push(once(n));
  }
  console.log(`engine ${path.basename(enginePath)}${process.env.ATTNVIZ_NO_WASM ? " (no WebAssembly)" : ""}, node ${process.version}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  for (const n of LENGTHS) {
    const sorted = times[n].sort((a, b) => a - b);
    console.log(`${String(n).padStart(3)} tokens: p50 ${quantile(sorted, 0.5).toFixed(2)} ms, p95 ${quantile(sorted, 0.95).toFixed(2)} ms (${sorted.length} forwards)`);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
