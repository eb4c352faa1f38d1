// MoveNet SinglePose Thunder (TensorFlow.js graph model) on 256 x 256 RGB patches, for build.py.
//
//   node run.js MODEL_JSON PATCHES_RAW COUNT > keypoints.jsonl
//
// PATCHES_RAW holds COUNT patches, each 256 * 256 * 3 bytes of RGB. One JSON line per patch: 17 COCO keypoints as
// [x, y, score], x and y in patch pixels, score the model's own (not calibrated; build.py maps it). The WebAssembly
// backend ships inside its npm package, so this runs offline; tfjs-node would download a native library at install.
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
    const output = model.execute(input); // [1, 1, 17, 3]: y, x (0..1), score
    const v = await output.data();
    tf.dispose([input, output]);
    const keypoints = [];
    for (let k = 0; k < 17; k++) keypoints.push([v[3 * k + 1] * SIDE, v[3 * k] * SIDE, v[3 * k + 2]]);
    process.stdout.write(JSON.stringify(keypoints) + '\n');
  }
  process.stderr.write(`movenet: ${count} patches on ${tf.getBackend()}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
