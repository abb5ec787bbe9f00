// The load-or-recompute choice follows the measured rates: a fast prefill beats a slow disk, a fast disk and decoder
// beat a slow prefill, and the priors hold until something is measured.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {KvController} from "../../main/engine/kv/kv-controller.js";

const chunk = {tokens: 400, fileBytes: 400 * 128 * 1024 / 6, coded: true};

describe("KvController", () => {
    it("loads from disk until the disk, the decoder and prefill have all been measured", () => {
        const controller = new KvController();
        assert.equal(controller.choose(chunk).source, "disk");
        controller.observePrefill(8000, 100);  // a fast prefill alone decides nothing yet
        assert.equal(controller.choose(chunk).source, "disk");
        controller.observeDiskRead(10e6, 100);
        assert.equal(controller.choose(chunk).source, "disk", "the decoder is not measured yet");
        assert.equal(controller.choose({...chunk, coded: false}).source, "recompute", "a raw file needs no decode");
        controller.observeDecode(50e6, 400, 100);
        assert.equal(controller.choose(chunk).source, "recompute");
    });

    it("recomputes when prefill is measured faster than reading and decoding", () => {
        const controller = new KvController();
        controller.observeDiskRead(10e6, 100);  // 100 MB/s
        controller.observeDecode(50e6, 400, 100);  // 500 MB/s of f16
        controller.observePrefill(8000, 100);  // 80 tokens/ms, a GPU
        const choice = controller.choose(chunk);
        assert.equal(choice.source, "recompute", JSON.stringify(choice));
        assert.ok(choice.recomputeMs < choice.diskMs);
    });

    it("loads when the disk and decoder are measured faster than prefill, and follows the rates as they change", () => {
        const controller = new KvController();
        controller.observeDiskRead(2e9, 1000);  // 2 GB/s
        controller.observeDecode(1e9, 8000, 1000);  // 1 GB/s of f16, 125 KB per token
        controller.observePrefill(2000, 1000);  // 2 tokens/ms
        assert.equal(controller.choose(chunk).source, "disk");
        // The disk slows down (another process, a cold spinning disk): after a few reads the choice flips.
        for (let i = 0; i < 20; i++)
            controller.observeDiskRead(1e6, 1000);
        assert.equal(controller.choose(chunk).source, "recompute");
        // A raw f16 file is not decoded: only the read counts.
        assert.ok(controller.choose({...chunk, coded: false}).diskMs < controller.choose(chunk).diskMs);
    });

    it("ignores samples that carry no rate", () => {
        const controller = new KvController();
        const before = controller.rates();
        controller.observeDiskRead(0, 10);
        controller.observePrefill(100, 0);
        controller.observeDecode(Number.NaN, 1, 1);
        assert.deepEqual(controller.rates(), before);
    });
});
