import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {chooseDecodeBatch, cpuDecodeBatchTokens, decodeBatchHeadroomBytes, gpuDecodeBatchTokens} from "../../main/engine/context-batch.js";

const GiB = 1024 ** 3;

describe("chooseDecodeBatch: the GPU context's ubatch", () => {
    it("takes the large ubatch where the card holds the context, its in-graph mask and the headroom", () => {
        const contextSize = 33_280;
        const maskBytes = contextSize * gpuDecodeBatchTokens * 6; // F32 and F16, n_ctx x ubatch
        const need = 6 * GiB + maskBytes + decodeBatchHeadroomBytes;
        assert.equal(chooseDecodeBatch({contextSize, evaluationTokens: 2048, freeBytes: need, contextBytes: 6 * GiB}), gpuDecodeBatchTokens);
        assert.equal(chooseDecodeBatch({contextSize, evaluationTokens: 2048, freeBytes: need - 1, contextBytes: 6 * GiB}), 2048);
    });

    it("keeps the evaluation batch on a small card (24 GB, an 8B f16 model loaded) and for short contexts", () => {
        assert.equal(chooseDecodeBatch({contextSize: 32_768, evaluationTokens: 2048, freeBytes: 7 * GiB, contextBytes: 5 * GiB}), 2048);
        assert.equal(chooseDecodeBatch({contextSize: 2048, evaluationTokens: 2048, freeBytes: 100 * GiB, contextBytes: GiB}), 2048);
    });

    it("never exceeds the context", () => {
        assert.equal(chooseDecodeBatch({contextSize: 4096, evaluationTokens: 2048, freeBytes: 100 * GiB, contextBytes: GiB}), 4096);
    });
});

describe("chooseDecodeBatch: the CPU context's ubatch", () => {
    it("takes cpuDecodeBatchTokens where RAM holds the context, its mask and the headroom, else node-llama-cpp's 512", () => {
        const contextSize = 8192;
        const need = 2 * GiB + contextSize * cpuDecodeBatchTokens * 6 + decodeBatchHeadroomBytes;
        assert.equal(chooseDecodeBatch({contextSize, evaluationTokens: 512, freeBytes: need, contextBytes: 2 * GiB, maxTokens: cpuDecodeBatchTokens}),
            cpuDecodeBatchTokens);
        assert.equal(chooseDecodeBatch({contextSize, evaluationTokens: 512, freeBytes: need - 1, contextBytes: 2 * GiB, maxTokens: cpuDecodeBatchTokens}), 512);
        assert.ok(cpuDecodeBatchTokens < gpuDecodeBatchTokens, "a CPU context keeps the smaller compute buffers");
    });
});
