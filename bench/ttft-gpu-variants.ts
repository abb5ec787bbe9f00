// The rows bench/ttft-gpu.ts can run, by name (--variants): strategy, ratio and where the chunk KVs come from.
import type {BlendStrategy} from "../main/engine/blend/blend.js";
import type {FocusOptions} from "../main/engine/blend/focus.js";
import {kvCodecLevelCount} from "../main/engine/kv/kv-codec.js";

export type Variant = {
    strategy: "full" | BlendStrategy, ratio: number, pinned?: boolean, resident?: boolean, fusedMask?: "host" | "graph",
    /** Chunk KVs from the disk tier's codec files at this level, page cache evicted, the controller choosing per chunk. */
    coldLevel?: number,
    /** The chunks the question is about, recomputed whole (focus.ts); default the product's. */
    focus?: FocusOptions
};

const noFocus: FocusOptions = {count: 0, continuations: false, hops: 0};

/** The warm rows at the blends' `ratio`. */
function knownVariants(ratio: number): Record<string, Variant> {
    return {full: {strategy: "full", ratio: 0}, "naive-pageable": {strategy: "naive", ratio: 0, pinned: false},
        naive: {strategy: "naive", ratio: 0}, "chunk-head": {strategy: "chunk-head", ratio}, hkvd: {strategy: "hkvd", ratio},
        "naive-resident": {strategy: "naive", ratio: 0, resident: true}, "chunk-head-resident": {strategy: "chunk-head", ratio, resident: true},
        // hkvd's fused decode (patch 0003) selects and recomputes in one pass; at ratio 0 it runs only the selection's share
        // (layers 0..check for every token, plus the labels and question), so the two rows split select from recompute.
        "hkvd-resident": {strategy: "hkvd", ratio, resident: true}, "hkvd0-resident": {strategy: "hkvd", ratio: 0, resident: true},
        hkvd0: {strategy: "hkvd", ratio: 0},
        // without the question's focus chunk recomputed whole (the selection alone, as before session 10)
        "hkvd-f0-resident": {strategy: "hkvd", ratio, resident: true, focus: noFocus}, "hkvd0-f0-resident": {strategy: "hkvd", ratio: 0, resident: true, focus: noFocus},
        "chunk-head-f0-resident": {strategy: "chunk-head", ratio, resident: true, focus: noFocus},
        // with a second hop: the chunk linked to the focus chunk by a name only the two share
        "hkvd-h1-resident": {strategy: "hkvd", ratio, resident: true, focus: {count: 1, continuations: true, hops: 1}},
        // the fused decode's mask filled on the host and copied over (patch 0004's sorted fill), against "auto" (in the graph on a GPU)
        "hkvd-resident-hostmask": {strategy: "hkvd", ratio, resident: true, fusedMask: "host"},
        "hkvd0-resident-hostmask": {strategy: "hkvd", ratio: 0, resident: true, fusedMask: "host"}};
}

/**
 * The rows named in `names` (comma list): a known warm row, or "<naive|chunk-head|hkvd|hkvd0>-cold" / "...-cold-l<N>":
 * the same strategy with its chunk KVs cold on disk, at codec level N (default `defaultColdLevel`).
 */
export function parseGpuVariants(names: string, ratio: number, defaultColdLevel: number): Variant[] {
    const known = knownVariants(ratio);
    const parseVariant = (name: string): Variant | undefined => {
        const cold = /^(naive|chunk-head|hkvd|hkvd0)-cold(?:-l(\d+))?$/.exec(name);
        if (cold == null)
            return known[name];
        const level = cold[2] != null ? Number(cold[2]) : defaultColdLevel;
        if (level >= kvCodecLevelCount)
            throw new Error(`${name}: the codec has levels 0..${kvCodecLevelCount - 1}`);
        return {...known[cold[1]!]!, coldLevel: level};
    };
    return names.split(",").map((name) => {
        const variant = parseVariant(name);
        if (variant == null)
            throw new Error(`unknown variant ${name}; known: ${Object.keys(known).join(", ")}, and naive, chunk-head, hkvd or hkvd0 ` +
                "followed by -cold or -cold-l<level>");
        return variant;
    });
}
