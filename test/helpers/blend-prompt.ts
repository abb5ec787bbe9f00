// The blend tests' shared prompt on stories260K (three short stories and a question), the next-token logits after a
// prepared prompt, and why the blend path cannot run here (the patched build or the addon missing), as a skip reason.
import assert from "node:assert/strict";
import type {LlamaContextSequence, Token} from "node-llama-cpp";
import {loadNativeAddon} from "../../main/engine/native/native-addon.js";
import {detectPatchedBuild} from "../../main/engine/native/patched-build.js";

export const storySources = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball.",
    "Tom was a big dog. He liked to run and jump in the garden. One day Tom found a shiny stick under a tree.",
    "The sun was hot, so Mom made cold lemonade. Lily and Tom sat in the shade and drank it all up."
].map((text, index) => ({n: index + 1, path: `story-${index + 1}.txt`, text}));

export const storyQuestion = "What did Lily and Tom drink?";

/** Evaluates tokens after whatever the sequence holds and returns the next-token logits. */
export async function nextLogits(sequence: LlamaContextSequence, tokens: Token[], vocabSize: number): Promise<Float64Array> {
    const results = await sequence.controlledEvaluate([...tokens.slice(0, -1), [tokens.at(-1)!, {generateNext: {logits: true}}]]);
    const logits = results.at(-1)?.next?.logits;
    assert.ok(logits != null && logits.size > 0, "no logits");
    const out = new Float64Array(vocabSize);
    for (const [token, value] of logits)
        out[token] = value;

    return out;
}

/** False where the blend path can run on the CPU build here, else why not. */
export function blendSkipReason(): string | false {
    const patched = detectPatchedBuild({gpu: false});
    const addon = loadNativeAddon();
    return !patched.patched ? `needs the patched llama.cpp build: ${patched.reason}` : addon.addon == null ? addon.error : false;
}
