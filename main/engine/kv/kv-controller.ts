/**
 * Chooses, per retrieved chunk whose KV is on disk, between loading it (read the file, decode it) and recomputing it
 * from its text, whichever should give the first token sooner. The rates it compares are measured on this machine as
 * the engine goes (every disk read, codec decode and chunk prefill reports its bytes or tokens and time) and smoothed.
 * It chooses the disk until every rate in the comparison has been measured at least once: the first chunks read from
 * disk are what measures it (and a damaged file is found and dropped rather than skipped).
 *
 * A question's chunks are planned together ({@link KvController.plan}): where recomputing runs on another device than
 * reading and decoding (a GPU prefills while the CPU decodes), the two sides run at once and the first token waits for
 * the longer one, so some chunks are recomputed even when each alone would load sooner.
 */

/** Exponentially weighted rate (units per ms), weighting recent samples by `weight`. */
class Rate {
    private value: number;
    private samples = 0;

    constructor(prior: number, private readonly weight = 0.3) {
        this.value = prior;
    }

    observe(units: number, ms: number): void {
        if (!(units > 0) || !(ms > 0) || !Number.isFinite(units / ms))
            return;
        const sample = units / ms;
        this.value = this.samples === 0 ? sample : this.value + this.weight * (sample - this.value);
        this.samples++;
    }

    get perMs(): number {
        return this.value;
    }

    get measured(): boolean {
        return this.samples > 0;
    }
}

export type KvRates = {diskBytesPerMs: number, decodeF16BytesPerMs: number, prefillTokensPerMs: number, f16BytesPerToken: number};

export type KvChoice = {source: "disk" | "recompute", diskMs: number, recomputeMs: number};

/** A chunk whose KV is in a disk file of `fileBytes` (decoded by the codec when `coded`) and nowhere nearer. */
export type KvPlanInput = {tokens: number, fileBytes: number, coded: boolean};

export class KvController {
    // Priors: 100 MB/s disk, 100 MB/s decode, 0.1 tokens/ms prefill (a slow CPU), 128 KiB of f16 KV per token (8B).
    private readonly disk = new Rate(100e3);
    private readonly decode = new Rate(100e3);
    private readonly prefill = new Rate(0.1);
    private readonly f16PerToken = new Rate(128 * 1024, 0.5);
    // What a question's load step took against its plan (actual / planned): the plan's rates are each part's own, and
    // the whole runs slower (decodes at once share the cores; the splice and header come on top). Measured on an H200:
    // 212 ms planned, 401 ms taken.
    private readonly coldScale = new Rate(1, 0.5);

    observeDiskRead(bytes: number, ms: number): void {
        this.disk.observe(bytes, ms);
    }

    /** A decode that produced `f16Bytes` of KV for `tokens` tokens. */
    observeDecode(f16Bytes: number, tokens: number, ms: number): void {
        this.decode.observe(f16Bytes, ms);
        this.f16PerToken.observe(f16Bytes, tokens);
    }

    observePrefill(tokens: number, ms: number): void {
        this.prefill.observe(tokens, ms);
    }

    /** What computing `tokens` chunk tokens alone takes at the measured prefill rate, or null before it is measured. */
    computeAloneMs(tokens: number): number | null {
        return this.prefill.measured ? tokens / this.prefill.perMs : null;
    }

    /**
     * Whether a plan's times come from this machine: disk, prefill and (for coded files) decode rates each measured
     * at least once. Before that they are priors, too slow or too fast by any factor, and nothing should be decided by
     * their sum: the first cold question loads (and probes a recompute) to measure them.
     */
    ratesMeasured(coded: boolean): boolean {
        return this.disk.measured && this.prefill.measured && (!coded || this.decode.measured);
    }

    /** A question's load step, whose plan ({@link planWaitMs} before scaling) said `plannedMs`, took `actualMs`. */
    observeColdWait(plannedMs: number, actualMs: number): void {
        this.coldScale.observe(actualMs, plannedMs);
    }

    /**
     * How long the question should wait for `choices` (from {@link plan}): the slower side where recomputing runs
     * alongside the loads, else both sides' sum; `scaled` by what past load steps took against their plans.
     */
    planWaitMs(choices: readonly KvChoice[], options: {recomputeAlongside: boolean}): {plannedMs: number, scaledMs: number} {
        let diskSide = 0, recomputeSide = 0;
        for (const choice of choices) {
            if (choice.source === "disk")
                diskSide += choice.diskMs;
            else
                recomputeSide += choice.recomputeMs;
        }
        const plannedMs = options.recomputeAlongside ? Math.max(diskSide, recomputeSide) : diskSide + recomputeSide;
        return {plannedMs, scaledMs: plannedMs * this.coldScale.perMs};
    }

    rates(): KvRates {
        return {
            diskBytesPerMs: this.disk.perMs, decodeF16BytesPerMs: this.decode.perMs, prefillTokensPerMs: this.prefill.perMs,
            f16BytesPerToken: this.f16PerToken.perMs
        };
    }

    /**
     * Load a `fileBytes` disk file holding `tokens` tokens' KV (decoded by the codec when `coded`), or recompute it?
     * Ties go to the disk: its KV is the chunk's own, recomputing alone gives the same, and the disk spares the GPU.
     */
    choose(input: {tokens: number, fileBytes: number, coded: boolean}): KvChoice {
        const rates = this.rates();
        const readMs = input.fileBytes / rates.diskBytesPerMs;
        const decodeMs = input.coded ? input.tokens * rates.f16BytesPerToken / rates.decodeF16BytesPerMs : 0;
        const diskMs = readMs + decodeMs;
        const recomputeMs = input.tokens / rates.prefillTokensPerMs;
        return {source: this.ratesMeasured(input.coded) && recomputeMs < diskMs ? "recompute" : "disk", diskMs, recomputeMs};
    }

    /**
     * The choices for a question's chunks on disk, in order. Without `recomputeAlongside` (one device does both: a
     * CPU build) the costs add up, so each chunk takes its own cheaper side ({@link choose}). With it, the question
     * waits for the slower of the two sides: chunks move from the disk to the recompute side, those whose recompute
     * costs least per disk time saved first, while that shortens the longer side. The disk side's times are the
     * measured ones, which already count loads running at once (see ChunkKvSource.observeDiskLoads).
     *
     * Prefill is measured only by recomputing a chunk, so after a start with every chunk on disk nothing would ever
     * measure it: with it unmeasured, the smallest of two or more chunks is recomputed as a probe. Beside the others'
     * loads it costs the question at most that one chunk's prefill.
     */
    plan(inputs: readonly KvPlanInput[], options: {recomputeAlongside: boolean}): KvChoice[] {
        const choices = inputs.map((input) => this.choose(input));
        if (!options.recomputeAlongside)
            return choices;
        if (!this.prefill.measured) {
            if (choices.length >= 2) {
                const smallest = inputs.reduce((best, input, index) => input.tokens < inputs[best]!.tokens ? index : best, 0);
                choices[smallest]!.source = "recompute";
            }
            return choices;
        }
        const measured = this.disk.measured && (inputs.every((input) => !input.coded) || this.decode.measured);
        if (!measured)
            return choices;

        let diskSide = 0, recomputeSide = 0;
        for (const choice of choices) {
            choice.source = "disk";
            diskSide += choice.diskMs;
        }
        const cheapestFirst = [...choices].sort((a, b) => a.recomputeMs / a.diskMs - b.recomputeMs / b.diskMs);
        for (const choice of cheapestFirst) {
            if (Math.max(recomputeSide + choice.recomputeMs, diskSide - choice.diskMs) >= Math.max(recomputeSide, diskSide))
                continue;
            choice.source = "recompute";
            recomputeSide += choice.recomputeMs;
            diskSide -= choice.diskMs;
        }
        return choices;
    }
}
