// Where a codec level's KL tail on the answer model comes from (issue #13, session 10): for the prompts with the
// largest KL under a level, per-position KL, per-layer ablation (one layer's K or V through the codec, the rest
// exact), per-token error and token ablation (given tokens' rows restored exact in every layer).
//   node --import tsx bench/codec-tail.ts [--level 4] [--prompts 8] [--seed 7] [--top 3] [--threads 1] [--quick] [--stats]
//                                         [--worst LAYER] [codec.bench tuning flags, --content F --contentratio R --kmask M --kmaskfactor F]
// --quick: only the per-prompt KL list and the size; --stats: per-layer K/V channel spreads of the first prompt.
import path from "node:path";
import {readFile, writeFile} from "node:fs/promises";
import {getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {isTransposed, type KvBody, type KvRows} from "../main/engine/kv/kv-blob.js";
import {parseSeqStateFile, serializeSeqStateFile} from "../test/helpers/seq-state-file.js";
import {decodeKvBody, encodeKvBody} from "../main/engine/kv/kv-codec.js";
import {ropeParamsFromGguf} from "../main/engine/kv/rope-params.js";
import {buildPrompt} from "../main/engine/prompt.js";
import {makeQuestionSet} from "../test/fixtures/answer-corpus.js";
import {answerModelPath} from "../test/fixtures/answer-model.js";
import {exampleTokens} from "../test/fixtures/answer-tokens.js";
import {klDivergence} from "../test/helpers/logits.js";
import {benchArgs, withTempDir} from "./harness.js";
import {codecTuning, codecTuningFlags} from "./codec-tuning.js";

const args = benchArgs({
    level: {type: "string", default: "4"},
    prompts: {type: "string", default: "8"},
    chunks: {type: "string", default: "6"},
    seed: {type: "string", default: "7"},
    top: {type: "string", default: "3"},
    threads: {type: "string", default: "1"},
    ...codecTuningFlags,
    kmask: {type: "string", default: "0"},
    kmaskfactor: {type: "string", default: "1"},
    /** Skip the ablations: only the per-prompt KL list. */
    quick: {type: "boolean", default: false},
    stats: {type: "boolean", default: false},
    /** The layer whose K is split by head and channel range (default the worst single tensor's). */
    worst: {type: "string", default: ""}
});
const threads = Number(args.threads);
const level = Number(args.level);
const tuning = {...codecTuning(args), kLayerMask: Number(args.kmask), kMaskFactor: Number(args.kmaskfactor)};
const fingerprint = "00112233445566778899aabbccddeeff";

const llama = await getLlama({gpu: false, maxThreads: threads, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: answerModelPath});
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const rope = ropeParamsFromGguf(model.fileInfo);
const context: LlamaContext = await model.createContext({contextSize: model.trainContextSize, threads, sequences: 1, flashAttention: true});
const sequence: LlamaContextSequence = context.getSequence();

type Case = {prefix: Token[], forced: Token[], kind: string};

const halfOf = (bits: number) => {
    const sign = bits & 0x8000 ? -1 : 1, e = (bits >> 10) & 31, m = bits & 1023;
    return e === 0 ? sign * m * 2 ** -24 : e === 31 ? NaN : sign * (1 + m / 1024) * 2 ** (e - 15);
};

await withTempDir("weft-codec-tail-", async (dir) => {
    async function dists(c: Case, body: KvBody): Promise<Float64Array[]> {
        await sequence.clearHistory();
        const file = path.join(dir, "load.bin");
        await writeFile(file, serializeSeqStateFile(Int32Array.from(c.prefix), body));
        await sequence.loadStateFromFile(file, {acceptRisk: true});
        const results = await sequence.controlledEvaluate(c.forced.map((token) => [token, {generateNext: {logits: true}}]));
        return results.map((result) => {
            const out = new Float64Array(vocab);
            for (const [token, logit] of result!.next!.logits!)
                out[token] = logit;
            return out;
        });
    }
    const perPos = (ref: Float64Array[], other: Float64Array[]) => ref.map((p, j) => klDivergence(p, other[j]!) * 1000);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

    const cases: Case[] = [];
    const bodies: KvBody[] = [];
    for (const example of makeQuestionSet(Number(args.seed), "held-out", Number(args.prompts), Number(args.chunks))) {
        const encoded = exampleTokens(model, example);
        if (encoded == null || encoded.tokens.length > context.contextSize)
            continue;
        const prompt = buildPrompt(model, example.question, example.chunks.map((chunk, index) => ({n: index + 1, path: chunk.path, text: chunk.text})), false);
        const chunkEnd = prompt.tokens.length - prompt.segments.at(-1)!.tokens.length;
        const prefix = encoded.tokens.slice(0, chunkEnd);
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(prefix);
        const file = path.join(dir, "state.bin");
        await sequence.saveStateToFile(file);
        bodies.push(parseSeqStateFile(await readFile(file)).body);
        cases.push({prefix, forced: encoded.tokens.slice(chunkEnd, -1), kind: (example as {kind?: string}).kind ?? "?"});
    }
    if (args.stats) {
        const b = bodies[0]!, n = cases[0]!.prefix.length;
        for (const [il, layer] of b.layers.entries())
            for (const isK of [true, false]) {
                const t = (isK ? layer.k : layer.v) as KvRows;
                const w = t.rowSize / 2, v = new Uint16Array(t.rows.buffer, t.rows.byteOffset, t.rows.byteLength / 2);
                const sd: number[] = [], mu: number[] = [];
                for (let ch = 0; ch < w; ch++) {
                    let s1 = 0, s2 = 0;
                    for (let tok = 0; tok < n; tok++) { const x = halfOf(v[tok * w + ch]!); s1 += x; s2 += x * x; }
                    mu.push(s1 / n); sd.push(Math.sqrt(Math.max(0, s2 / n - (s1 / n) ** 2)));
                }
                const q = (xs: number[]) => { const s = [...xs].sort((a, b2) => a - b2); return [0.1, 0.5, 0.9, 1].map((p2) => s[Math.min(s.length - 1, Math.floor(p2 * s.length))]!.toFixed(2)).join("/"); };
                const tensor = Math.sqrt(sd.reduce((s1, x) => s1 + x * x, 0) / w);
                const quarter = (qq: number) => Math.sqrt(sd.filter((_x, ch) => Math.floor((ch % 64) / 16) === qq).reduce((s1, x) => s1 + x * x, 0) / (w / 4)).toFixed(2);
                console.log(`layer ${il} ${isK ? "K" : "V"}: spread p10/p50/p90/max ${q(sd)}, tensor ${tensor.toFixed(2)}, by dim quarter ${[0, 1, 2, 3].map(quarter).join("/")}, |mean| p50/max ${q(mu.map(Math.abs)).split("/").slice(1, 4).join("/")}`);
            }
        return;
    }
    const coded: KvBody[] = [];
    const refs: Float64Array[][] = [];
    const kls: number[] = [];
    let compressed = 0, values = 0;
    for (const [i, c] of cases.entries()) {
        const file = await encodeKvBody(bodies[i]!, {level, fingerprint, threads, rope, tuning});
        compressed += file.byteLength;
        values += bodies[i]!.layers.reduce((sum, layer) => sum + ((layer.k as KvRows).rows.byteLength + (layer.v as KvRows).rows.byteLength) / 2, 0);
        coded.push((await decodeKvBody(file, {fingerprint, threads})).body);
        refs.push(await dists(c, bodies[i]!));
        kls.push(mean(perPos(refs[i]!, await dists(c, coded[i]!))));
    }
    const order = kls.map((kl, i) => i).sort((a, b) => kls[b]! - kls[a]!);
    const sorted = [...kls].sort((a, b) => a - b);
    console.log(`L${level}: ${cases.length} prompts, KL mean ${mean(kls).toFixed(3)} median ${sorted[sorted.length >> 1]!.toFixed(3)} max ${sorted.at(-1)!.toFixed(3)} mnat; ${(values * 2 / compressed).toFixed(2)}x smaller than f16 (${(compressed * 8 / values).toFixed(2)} bits/value); tuning ${JSON.stringify(tuning)}`);
    console.log(`per prompt (index:kl): ${kls.map((kl, i) => `${i}:${kl.toFixed(1)}`).join(" ")}`);
    if (args.quick)
        return;

    const rowsOf = (t: KvRows) => t;
    const nLayer = bodies[0]!.layers.length;
    /** Body with layer tensors from `coded` where pick(layer, isK) says so, and `exactTokens` restored in every tensor. */
    function hybrid(exact: KvBody, lossy: KvBody, pick: (layer: number, isK: boolean) => boolean, exactTokens: number[] = []): KvBody {
        return {
            ...exact,
            layers: exact.layers.map((layer, il) => {
                const mix = (isK: boolean) => {
                    const e = rowsOf((isK ? layer.k : layer.v) as KvRows), l = rowsOf((isK ? lossy.layers[il]!.k : lossy.layers[il]!.v) as KvRows);
                    if (!pick(il, isK))
                        return e;
                    const rows = Uint8Array.from(l.rows);
                    for (const t of exactTokens)
                        rows.set(e.rows.subarray(t * e.rowSize, (t + 1) * e.rowSize), t * e.rowSize);
                    return {...l, rows};
                };
                return {k: mix(true), v: mix(false)};
            })
        };
    }
    if (bodies[0]!.layers.some((layer) => isTransposed(layer.v)))
        throw new Error("V transposed: not handled");

    const half = halfOf;
    for (const i of order.slice(0, Number(args.top))) {
        const c = cases[i]!, ref = refs[i]!;
        const full = perPos(ref, await dists(c, coded[i]!));
        console.log(`\n== prompt ${i} (${c.kind}), ${c.prefix.length} chunk tokens, KL ${kls[i]!.toFixed(2)} mnat`);
        console.log(`per forced position (token: KL mnat): ${full.map((kl, j) => `${JSON.stringify(model.detokenize([c.forced[j + 1] ?? c.forced[j]!]))}:${kl.toFixed(0)}`).join(" ")}`);
        const layerRow: string[] = [];
        for (let il = 0; il < nLayer; il++) {
            const k = mean(perPos(ref, await dists(c, hybrid(bodies[i]!, coded[i]!, (l, isK) => l === il && isK))));
            const v = mean(perPos(ref, await dists(c, hybrid(bodies[i]!, coded[i]!, (l, isK) => l === il && !isK))));
            layerRow.push(`L${il} K ${k.toFixed(2)} V ${v.toFixed(2)}`);
        }
        console.log(`only one tensor coded: ${layerRow.join(" | ")}`);
        // Within the worst tensor: one head coded, and one quarter of every head's channels coded.
        {
            const worstLayer = Number(args.worst === "" ? -1 : args.worst);
            const wl = worstLayer >= 0 ? worstLayer : Number(layerRow.map((r, il) => [Number(r.split(" ")[2]), il]).sort((a, b) => b[0]! - a[0]!)[0]![1]);
            const headDim = rope?.headDim ?? 64;
            const e = bodies[i]!.layers[wl]!.k as KvRows;
            const width = e.rowSize / 2;
            const channelMix = (keep: (ch: number) => boolean): KvBody => {
                const l = coded[i]!.layers[wl]!.k as KvRows;
                const rows = Uint8Array.from(e.rows);
                const ev = new Uint16Array(rows.buffer), lv = new Uint16Array(l.rows.buffer, l.rows.byteOffset, l.rows.byteLength / 2);
                for (let t = 0; t < c.prefix.length; t++)
                    for (let ch = 0; ch < width; ch++)
                        if (keep(ch))
                            ev[t * width + ch] = lv[t * width + ch]!;
                return {...bodies[i]!, layers: bodies[i]!.layers.map((layer, il) => il === wl ? {k: {...e, rows}, v: layer.v} : layer)};
            };
            const out: string[] = [];
            for (let h = 0; h < width / headDim; h++)
                out.push(`head ${h} ${mean(perPos(ref, await dists(c, channelMix((ch) => Math.floor(ch / headDim) === h)))).toFixed(2)}`);
            for (let q = 0; q < 4; q++)
                out.push(`dims ${q * headDim / 4}-${(q + 1) * headDim / 4 - 1} ${mean(perPos(ref, await dists(c, channelMix((ch) => Math.floor((ch % headDim) / (headDim / 4)) === q)))).toFixed(2)}`);
            console.log(`layer ${wl} K, only these channels coded: ${out.join(" | ")}`);
        }
        const allK = mean(perPos(ref, await dists(c, hybrid(bodies[i]!, coded[i]!, (_l, isK) => isK))));
        const allV = mean(perPos(ref, await dists(c, hybrid(bodies[i]!, coded[i]!, (_l, isK) => !isK))));
        console.log(`all K coded (V exact) ${allK.toFixed(2)}, all V coded (K exact) ${allV.toFixed(2)}`);
        // Per-token relative error over all layers' K and V.
        const nTok = c.prefix.length;
        const errs = new Float64Array(nTok), norms = new Float64Array(nTok);
        const perLayerTok: Float64Array[] = [];
        for (let il = 0; il < nLayer; il++) {
            const lt = new Float64Array(nTok);
            for (const isK of [true, false]) {
                const e = (isK ? bodies[i]!.layers[il]!.k : bodies[i]!.layers[il]!.v) as KvRows;
                const l = (isK ? coded[i]!.layers[il]!.k : coded[i]!.layers[il]!.v) as KvRows;
                const ev = new Uint16Array(e.rows.buffer, e.rows.byteOffset, e.rows.byteLength / 2);
                const lv = new Uint16Array(l.rows.buffer, l.rows.byteOffset, l.rows.byteLength / 2);
                const w = e.rowSize / 2;
                for (let t = 0; t < nTok; t++)
                    for (let ch = 0; ch < w; ch++) {
                        const a = half(ev[t * w + ch]!), b = half(lv[t * w + ch]!);
                        errs[t] = errs[t]! + (a - b) ** 2;
                        norms[t] = norms[t]! + a * a;
                        lt[t] = lt[t]! + (a - b) ** 2;
                    }
            }
            perLayerTok.push(lt);
        }
        const tokOrder = [...errs.keys()].sort((a, b) => errs[b]! / norms[b]! - errs[a]! / norms[a]!);
        const medRel = [...errs].map((e, t) => e / norms[t]!).sort((a, b) => a - b)[nTok >> 1]!;
        console.log(`relative error^2 per token: median ${medRel.toExponential(2)}; top: ${tokOrder.slice(0, 8).map((t) => `${t}(${JSON.stringify(model.detokenize([c.prefix[t]!]))}) ${(errs[t]! / norms[t]!).toExponential(2)} |x|^2 ${norms[t]!.toFixed(0)}`).join(", ")}`);
        const normOrder = [...norms.keys()].sort((a, b) => norms[b]! - norms[a]!);
        console.log(`largest |x|^2 tokens: ${normOrder.slice(0, 6).map((t) => `${t}(${JSON.stringify(model.detokenize([c.prefix[t]!]))}) ${norms[t]!.toFixed(0)}`).join(", ")}; median |x|^2 ${[...norms].sort((a, b) => a - b)[nTok >> 1]!.toFixed(0)}`);
        for (const [name, toks] of [["token 0", [0]], ["tokens 0-3", [0, 1, 2, 3]], ["top-8 rel. error", tokOrder.slice(0, 8)], ["top-8 norm", normOrder.slice(0, 8)]] as const) {
            const kl = mean(perPos(ref, await dists(c, hybrid(bodies[i]!, coded[i]!, () => true, [...toks]))));
            console.log(`exact ${name} (all layers): KL ${kl.toFixed(2)}`);
        }
    }
});
await context.dispose();
await model.dispose();
