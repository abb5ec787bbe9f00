// A synthetic chunk KV with the statistics that matter to the codec, for throughput runs at a real model's shape
// (stories260K is 5 layers of 64): per channel a mean and a spread drawn log-normally (a few outlier channels, as
// keys have), and per token a slowly drifting component shared by neighbours (AR(1), rho 0.8) plus noise.
import {f32ToF16} from "../test/helpers/f16.js";
import type {KvCodecLayer} from "../main/engine/native/native-addon.js";
import {seededRandom} from "./harness.js";

function gaussian(random: () => number): number {
    return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

function tensor(random: () => number, nTokens: number, channels: number, outliers: boolean): Uint8Array {
    const mean = Float32Array.from({length: channels}, () => outliers ? gaussian(random) * 0.5 : 0);
    const spread = Float32Array.from({length: channels}, () => Math.exp(gaussian(random) * 0.5) * (outliers && random() < 0.02 ? 8 : 1));
    const values = new Float32Array(nTokens * channels);
    const drift = new Float32Array(channels);
    for (let t = 0; t < nTokens; t++)
        for (let c = 0; c < channels; c++) {
            drift[c] = 0.8 * drift[c]! + 0.6 * gaussian(random);
            values[t * channels + c] = mean[c]! + spread[c]! * (0.7 * drift[c]! + 0.5 * gaussian(random));
        }
    const half = f32ToF16(values);
    return new Uint8Array(half.buffer, half.byteOffset, half.byteLength);
}

/** Layers of `width` K and V channels over `nTokens` tokens, K and V token-major, seeded. */
export function syntheticKv(nLayer: number, nTokens: number, width: number, seed = 1): KvCodecLayer[] {
    const random = seededRandom(seed);
    return Array.from({length: nLayer}, () => ({
        k: tensor(random, nTokens, width, true),
        v: tensor(random, nTokens, width, false),
        nEmbdK: width,
        nEmbdV: width
    }));
}
