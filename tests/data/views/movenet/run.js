// MoveNet (TensorFlow.js graph model) on 256 x 256 RGB patches, for build.py.
//
//   node run.js MODEL_JSON PATCHES_RAW COUNT > results.jsonl
//
// PATCHES_RAW holds COUNT patches, each 256 * 256 * 3 bytes of RGB. One JSON line per patch. SinglePose (output
// [1, 1, 17, 3]): 17 COCO keypoints as [x, y, score]. MultiPose (output [1, N, 56]): a list of N people, each
// {"keypoints": 17 x [x, y, score], "box": [x1, y1, x2, y2], "score": s}. x and y in patch pixels; scores are the
// model's own (build.py maps them). The WebAssembly backend ships inside its npm package, so this runs offline;
// tfjs-node would download a native library at install.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const { loadGraphModel } = require('@tensorflow/tfjs-converter');

const SIDE = 256;

// A graph model from local files: model.json plus the weight shards it lists beside it.
function localModel(jsonPath) {
  return {
    load: async () => {
      const spec = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
      const weightSpecs = [];
      const shards = [];
      for (const group of spec.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const shard of group.paths) shards.push(fs.readFileSync(path.join(path.dirname(jsonPath), shard)));
      }
      const weights = Buffer.concat(shards);
      return {
        modelTopology: spec.modelTopology,
        format: spec.format,
        generatedBy: spec.generatedBy,
        convertedBy: spec.convertedBy,
        weightSpecs,
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      };
    },
  };
}

// 17 keypoints stored as y, x (0..1), score from `offset` on.
function keypointsAt(v, offset) {
  const keypoints = [];
  for (let k = 0; k < 17; k++) {
    keypoints.push([v[offset + 3 * k + 1] * SIDE, v[offset + 3 * k] * SIDE, v[offset + 3 * k + 2]]);
  }
  return keypoints;
}

// MultiPose rows: 17 keypoints, then ymin, xmin, ymax, xmax (0..1) and the person's score.
function people(v, count) {
  const out = [];
  for (let p = 0; p < count; p++) {
    const o = 56 * p;
    out.push({
      keypoints: keypointsAt(v, o),
      box: [v[o + 52] * SIDE, v[o + 51] * SIDE, v[o + 54] * SIDE, v[o + 53] * SIDE],
      score: v[o + 55],
    });
  }
  return out;
}

async function main() {
  const [modelJson, rawPath, countArg] = process.argv.slice(2);
  if (!modelJson || !rawPath || !countArg) throw new Error('usage: node run.js MODEL_JSON PATCHES_RAW COUNT');
  const count = Number(countArg);
  const patchBytes = SIDE * SIDE * 3;
  const raw = fs.readFileSync(rawPath);
  if (raw.length !== count * patchBytes) throw new Error(`${rawPath}: ${raw.length} bytes, not ${count} patches`);
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  await tf.setBackend('wasm');
  const model = await loadGraphModel(localModel(modelJson));
  for (let i = 0; i < count; i++) {
    const pixels = Int32Array.from(raw.subarray(i * patchBytes, (i + 1) * patchBytes));
    const input = tf.tensor(pixels, [1, SIDE, SIDE, 3], 'int32');
    const output = model.execute(input);
    const shape = output.shape;
    const v = await output.data();
    tf.dispose([input, output]);
    const result = shape[shape.length - 1] === 56 ? people(v, shape[1]) : keypointsAt(v, 0);
    process.stdout.write(JSON.stringify(result) + '\n');
  }
  process.stderr.write(`${path.basename(modelJson)}: ${count} patches on ${tf.getBackend()}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
