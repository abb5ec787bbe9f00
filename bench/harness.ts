// Shared pieces of the benchmarks: output (aligned table or JSON lines), timing, percentiles, peak RSS,
// temp dirs that are removed however the run ends, and a seeded PRNG so every run sees the same corpus.
import {rmSync} from "node:fs";
import {mkdtemp, rm} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {parseArgs, type ParseArgsConfig} from "node:util";

/**
 * lance sizes its compute pool as cores - 2 (at least 1), and with one thread its full-text index build deadlocks
 * (lancedb#3568; seen here at 100,000 chunks on 2 cores). The app has no such setting yet, so the benchmarks would
 * hang rather than measure; set before any table is touched, since lance reads it when its pool first starts.
 */
const lanceThreadsPreset = process.env.LANCE_CPU_THREADS;
if (lanceThreadsPreset === undefined && os.availableParallelism() <= 3)
    process.env.LANCE_CPU_THREADS = "2";

export function lanceThreadsNote(): string {
    return lanceThreadsPreset !== undefined ? `LANCE_CPU_THREADS=${lanceThreadsPreset} (from the environment)`
        : process.env.LANCE_CPU_THREADS !== undefined ? `LANCE_CPU_THREADS=${process.env.LANCE_CPU_THREADS} set by the harness (lance's default of 1 compute thread on <= 3 cores deadlocks FTS index builds)`
            : "LANCE_CPU_THREADS unset (lance default)";
}

export type Value = string | number | boolean | null;
export type Row = {row: string} & Record<string, Value>;
export type Column = {key: string, header: string, digits?: number};

/** Parses the flags after the benchmark's name; `--json` is common to all. */
export function benchArgs<O extends NonNullable<ParseArgsConfig["options"]>>(options: O) {
    return parseArgs({args: process.argv.slice(2), options: {...options, json: {type: "boolean", default: false}}, strict: true}).values;
}

/**
 * Table mode prints once every row is in (columns need their widths); JSON mode prints each row as it lands,
 * so a killed run still leaves what it measured. Anything that is not a row goes to stderr in JSON mode,
 * keeping stdout machine-readable.
 */
export class Report {
    private readonly rows: Row[] = [];
    private readonly notes: string[] = [];

    public constructor(private readonly bench: string, private readonly columns: Column[], private readonly json: boolean) {}

    public add(row: Row): void {
        this.rows.push(row);
        if (this.json) {
            const numbers = Object.fromEntries(Object.entries(row).filter(([key]) => key !== "row")
                .map(([key, value]) => [key, typeof value === "number" ? round(value, 3) : value]));
            console.log(JSON.stringify({bench: this.bench, row: row.row, ...numbers}));
        }
    }

    public note(line: string): void {
        if (this.json)
            console.error(line);
        else
            this.notes.push(line);
    }

    public print(): void {
        if (this.json)
            return;

        const columns: Column[] = [{key: "row", header: this.bench}, ...this.columns];
        const cells = this.rows.map((row) => columns.map((column) => formatCell(row[column.key], column.digits)));
        const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((line) => line[i]!.length)));
        // Labels read left to right; numbers line up on their last digit.
        const line = (values: string[]) => values.map((value, i) => i === 0 ? value.padEnd(widths[i]!) : value.padStart(widths[i]!))
            .join("  ").trimEnd();
        console.log(line(columns.map((column) => column.header)));
        console.log(widths.map((width) => "-".repeat(width)).join("  "));
        for (const values of cells)
            console.log(line(values));
        for (const note of this.notes)
            console.log(note);
    }
}

function formatCell(value: Value | undefined, digits = 0): string {
    if (value == null)
        return "-";
    if (typeof value === "boolean")
        return value ? "PASS" : "FAIL";
    if (typeof value === "number")
        return value.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
    return value;
}

function round(value: number, digits: number): number {
    const scale = 10 ** digits;
    return Math.round(value * scale) / scale;
}

/** Other work on a 2-core machine skews every number, so each run says how busy the machine was. */
export function loadNote(loadAtStart: number): string {
    return `load average (1 min): ${loadAtStart.toFixed(2)} at start, ${os.loadavg()[0]!.toFixed(2)} at end, ${os.availableParallelism()} cores; `
        + lanceThreadsNote();
}

/** Progress for the person watching; stderr so it never mixes with a table or JSON on stdout. */
export function log(message: string): void {
    console.error(`[bench] ${message}`);
}

export async function timed<T>(work: () => Promise<T>): Promise<{result: T, seconds: number}> {
    const start = performance.now();
    const result = await work();
    return {result, seconds: (performance.now() - start) / 1000};
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
    if (sorted.length === 0)
        return Number.NaN;
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Peak resident set size while `work` runs, sampled every `intervalMs`. A long synchronous stretch delays the
 * timer, so a peak inside one can be missed; LanceDB's native threads keep running and are counted, though.
 */
export async function withPeakRss<T>(work: () => Promise<T>, intervalMs = 20): Promise<{result: T, peakRssMb: number}> {
    let peak = process.memoryUsage.rss();
    const timer = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage.rss());
    }, intervalMs);
    try {
        const result = await work();
        peak = Math.max(peak, process.memoryUsage.rss());
        return {result, peakRssMb: peak / 2 ** 20};
    } finally {
        clearInterval(timer);
    }
}

const liveTempDirs = new Set<string>();
let exitHooked = false;

/** Ctrl-C or an uncaught error must not leave a 100 MB corpus in /tmp, so the dirs are also removed on exit. */
function hookExit(): void {
    if (exitHooked)
        return;

    exitHooked = true;
    const removeAll = () => {
        for (const dir of liveTempDirs)
            rmSync(dir, {recursive: true, force: true});
        liveTempDirs.clear();
    };
    process.on("exit", removeAll);
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.on(signal, () => {
            removeAll();
            process.exit(signal === "SIGINT" ? 130 : 143);
        });
    }
}

/** Under WEFT_BENCH_TMP when scripts/bench.mjs runs us: it removes that folder even after a crash (SIGSEGV, SIGKILL). */
export async function withTempDir<T>(prefix: string, work: (dir: string) => Promise<T>): Promise<T> {
    hookExit();
    const dir = await mkdtemp(path.join(process.env.WEFT_BENCH_TMP ?? os.tmpdir(), `weft-bench-${prefix}-`));
    liveTempDirs.add(dir);
    try {
        return await work(dir);
    } finally {
        await rm(dir, {recursive: true, force: true});
        liveTempDirs.delete(dir);
    }
}

/** mulberry32: tiny, fast, and good enough to make corpora that are identical run to run. */
export function seededRandom(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
}

const onsets = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cl", "dr",
    "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"];
const vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"];
const codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk"];

/**
 * Words of ranked frequency (Zipf, s = 1): rank 0 is in almost every chunk, the last ranks in a few hundred
 * of 100,000. Made-up syllables rather than English so no word is a stop word to anyone's analyzer.
 */
export class Vocabulary {
    public readonly words: string[];
    private readonly cumulative: Float64Array;

    public constructor(private readonly random: () => number, size: number) {
        const seen = new Set<string>();
        while (seen.size < size) {
            const syllables = 1 + Math.floor(random() * 3);
            let word = "";
            for (let i = 0; i < syllables; i++)
                word += pick(random, onsets) + pick(random, vowels) + pick(random, codas);
            seen.add(word);
        }
        this.words = [...seen];
        this.cumulative = new Float64Array(size);
        let total = 0;
        for (let rank = 0; rank < size; rank++)
            this.cumulative[rank] = total += 1 / (rank + 1);
        for (let rank = 0; rank < size; rank++)
            this.cumulative[rank]! /= total;
    }

    public word(): string {
        const target = this.random();
        let low = 0;
        let high = this.cumulative.length - 1;
        while (low < high) {
            const middle = (low + high) >>> 1;
            if (this.cumulative[middle]! < target)
                low = middle + 1;
            else
                high = middle;
        }
        return this.words[low]!;
    }

    public sentence(minWords: number, maxWords: number): string {
        const count = minWords + Math.floor(this.random() * (maxWords - minWords + 1));
        const words = Array.from({length: count}, () => this.word());
        words[0] = words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1);
        return `${words.join(" ")}.`;
    }
}

export function pick<T>(random: () => number, items: readonly T[]): T {
    return items[Math.floor(random() * items.length)]!;
}

export function formatCount(n: number): string {
    return n % 1000 === 0 && n >= 1000 ? `${n / 1000}k` : n.toLocaleString("en-US");
}

/**
 * The middle value, or the mean of the two middle ones. (bench/ttft-gpu.ts took the lower of the two middle values until
 * session 9, so its rows of two runs were the faster run: bench/GPU.md says which tables that affects.)
 */
export function median(values: readonly number[]): number {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
