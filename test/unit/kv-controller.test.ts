// The load-or-recompute choice follows the measured rates: a fast prefill beats a slow disk, a fast disk and decoder
// beat a slow prefill, and the priors hold until something is measured.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {type KvChoice, KvController} from "../../main/engine/kv/kv-controller.js";

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

    /** A controller whose average 512-token, 11 MB chunk takes `diskMs` to read and decode and `recomputeMs` to prefill. */
    function measuredController(diskMs: number, recomputeMs: number): KvController {
        const controller = new KvController();
        controller.observeDiskRead(11e6, diskMs / 4);  // a quarter reading
        controller.observeDecode(512 * 131072, 512, diskMs * 3 / 4);  // three quarters decoding
        controller.observePrefill(512, recomputeMs);
        return controller;
    }
    const sixteen = Array.from({length: 16}, () => ({tokens: 512, fileBytes: 11e6, coded: true}));
    /** When the question's KV is ready: both sides at once (a GPU recomputes while the CPU decodes). */
    const makespan = (choices: KvChoice[]) => Math.max(
        choices.reduce((sum, c) => sum + (c.source === "disk" ? c.diskMs : 0), 0),
        choices.reduce((sum, c) => sum + (c.source === "recompute" ? c.recomputeMs : 0), 0));
    const recomputed = (choices: KvChoice[]) => choices.filter((c) => c.source === "recompute").length;

    it("plans each chunk on its own where one device reads, decodes and recomputes (costs add up)", () => {
        const slowPrefill = measuredController(10, 25);
        assert.deepEqual(slowPrefill.plan(sixteen, {recomputeAlongside: false}), sixteen.map((chunk) => slowPrefill.choose(chunk)));
        assert.equal(recomputed(slowPrefill.plan(sixteen, {recomputeAlongside: false})), 0);
        const fastPrefill = measuredController(30, 10);
        assert.equal(recomputed(fastPrefill.plan(sixteen, {recomputeAlongside: false})), 16);
    });

    it("splits a question's chunks between the disk and recomputing when a GPU recomputes while the CPU decodes", () => {
        for (const [diskMs, recomputeMs] of [[10, 25], [30, 10], [10, 1000], [10, 10]] as const) {
            const controller = measuredController(diskMs, recomputeMs);
            const plan = controller.plan(sixteen, {recomputeAlongside: true});
            // Identical chunks: the best split recomputes k of them for the k that gives the shortest wait.
            const one = controller.choose(sixteen[0]!);
            const best = Math.min(...Array.from({length: 17}, (_, k) => Math.max(k * one.recomputeMs, (16 - k) * one.diskMs)));
            assert.ok(Math.abs(makespan(plan) - best) < 1e-9, `disk ${diskMs} / recompute ${recomputeMs} ms: ${makespan(plan)} vs ${best}`);
            assert.ok(makespan(plan) <= makespan(plan.map((c) => ({...c, source: "disk" as const}))));
        }
        // 10 ms from disk, 25 recomputing: four chunks recomputed (100 ms) while twelve load (120 ms), against 160 all from disk.
        assert.equal(recomputed(measuredController(10, 25).plan(sixteen, {recomputeAlongside: true})), 4);
        // Recomputing each is faster, yet the CPU's decodes still take four of them off the GPU's queue.
        assert.equal(recomputed(measuredController(30, 10).plan(sixteen, {recomputeAlongside: true})), 12);
        assert.equal(recomputed(measuredController(10, 1000).plan(sixteen, {recomputeAlongside: true})), 0);
    });

    it("plans every chunk from disk until the disk and decoder are measured, whatever the devices", () => {
        const controller = new KvController();
        controller.observePrefill(1e6, 1);
        assert.ok(controller.plan(sixteen, {recomputeAlongside: true}).every((choice) => choice.source === "disk"));
    });

    it("recomputes one chunk, the smallest, to measure prefill where it runs beside the loads and nothing measured it yet", () => {
        const chunks = [{tokens: 500, fileBytes: 11e6, coded: true}, {tokens: 120, fileBytes: 3e6, coded: true}, {tokens: 480, fileBytes: 10e6, coded: true}];
        const controller = new KvController();
        controller.observeDiskRead(11e6, 1);  // a disk and decoder far faster than any prefill would be
        controller.observeDecode(512 * 131072, 512, 1);
        assert.deepEqual(controller.plan(chunks, {recomputeAlongside: true}).map((choice) => choice.source), ["disk", "recompute", "disk"]);
        assert.ok(controller.plan(chunks, {recomputeAlongside: false}).every((choice) => choice.source === "disk"), "on one device it would cost the question");
        assert.ok(controller.plan(chunks.slice(0, 1), {recomputeAlongside: true}).every((choice) => choice.source === "disk"), "a lone chunk is not probed");
        // Once prefill is measured (slow here), the plan follows the rates.
        controller.observePrefill(512, 100);
        assert.ok(controller.plan(chunks, {recomputeAlongside: true}).every((choice) => choice.source === "disk"));
    });

    it("ignores samples that carry no rate", () => {
        const controller = new KvController();
        const before = controller.rates();
        controller.observeDiskRead(0, 10);
        controller.observePrefill(100, 0);
        controller.observeDecode(Number.NaN, 1, 1);
        assert.deepEqual(controller.rates(), before);
    });

    it("expects the slower side where recomputing runs alongside, the sum otherwise, scaled by past load steps", () => {
        const controller = new KvController();
        const choices: KvChoice[] = [
            {source: "disk", diskMs: 30, recomputeMs: 90}, {source: "disk", diskMs: 20, recomputeMs: 80},
            {source: "recompute", diskMs: 25, recomputeMs: 40}
        ];
        assert.deepEqual(controller.planWaitMs(choices, {recomputeAlongside: true}), {plannedMs: 50, scaledMs: 50});
        assert.deepEqual(controller.planWaitMs(choices, {recomputeAlongside: false}), {plannedMs: 90, scaledMs: 90});
        // A load step planned at 212 ms took 401 (an H200): the next plan is scaled by that.
        controller.observeColdWait(212, 401);
        const next = controller.planWaitMs(choices, {recomputeAlongside: true});
        assert.equal(next.plannedMs, 50);
        assert.ok(Math.abs(next.scaledMs - 50 * 401 / 212) < 1e-9, `scaled ${next.scaledMs}`);
        controller.observeColdWait(100, 100);  // later steps move it back towards their own ratio
        const after = controller.planWaitMs(choices, {recomputeAlongside: true}).scaledMs;
        assert.ok(after < next.scaledMs && after > 50, `scaled ${after}`);
        controller.observeColdWait(0, 50);  // nothing planned: no ratio to learn
        assert.equal(controller.planWaitMs(choices, {recomputeAlongside: true}).scaledMs, after);
    });

    it("counts its rates as measured only once disk, prefill and (for coded files) decode have each been observed", () => {
        const controller = new KvController();
        assert.equal(controller.ratesMeasured(false), false);
        controller.observeDiskRead(1e6, 2);
        assert.equal(controller.ratesMeasured(false), false, "prefill is still a prior");
        controller.observePrefill(512, 30);
        assert.equal(controller.ratesMeasured(false), true);
        assert.equal(controller.ratesMeasured(true), false, "decode is still a prior");
        controller.observeDecode(64e6, 512, 40);
        assert.equal(controller.ratesMeasured(true), true);
    });
});
