// Answer quality under KV reuse: exact match and F1 of Weft's answer model (test/fixtures/models/weft-answers.gguf,
// trained by scripts/train-answers.py) on held-out questions of the answer corpus, per strategy and question kind.
//   npm run bench -- answers [--questions N] [--chunks N] [--seed S] [--threads N] [--model PATH] [--json]
//                            [--variants full,naive,hkvd@0.15,hkvd@0.15/c2,hkvd@0.15+f0,...] [--codec f16,q4_0,q4_0-block,L2,L4,...]
//   /cN: hkvd's check layer N (default 1); +fK[c][hN]: the K chunks the question is about recomputed whole, c: with
//   the chunks that continue them, hN: N hops (focus.ts; default +f1ch1); +f0: none.
//
// Each question comes with its sources (the gold chunks and distractors, in Weft's prompt format). Chunk KVs are
// computed once before any strategy runs, as ingest would have; `full` prefills the whole prompt, `prefix` finds
// the same sources already in the sequence under another question, the blend strategies go through BlendSession.prepare
// (the engine's own path), hkvd and chunk-head with the question's focus sources first and renumbered, as the chat
// service orders them (focus-order.ts). Every strategy then decodes greedily, as `weft ask` does, until end of text.
//
// --codec (issue #13): answer quality when the sources' KV passes through a KV format. The prompt up to the question
// (its sources) is prefilled in f16 in one pass (a flash-attention context, as the codec benchmark's), its KV saved,
// round-tripped through the format and loaded, then the question is evaluated and the answer decoded greedily. Formats:
// `f16` (the saved KV loaded as is), `L0`..`L5` (Weft's codec levels: encode, container, decode, the path of
// `npm run bench -- codec`'s answer-model rows), `q8_0-block` / `q4_0-block` (ggml's block formats on the sources' KV
// rows), `q8_0` / `q4_0` (llama.cpp's own quantized KV cache for the whole context, prefilled and decoded in it).
// Rows have strategy `codec` and a `codec` field; with --codec and no --variants only the codec rows run.
import path from "node:path";
import {readFile, writeFile} from "node:fs/promises";
import {getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type Token} from "node-llama-cpp";
import {type BlendSession, type BlendStrategy, openBlendSession, selectionLayer} from "../main/engine/blend/blend.js";
import {defaultFocus, type FocusOptions, nameTokenTest} from "../main/engine/blend/focus.js";
import {inFocusOrder} from "../main/engine/blend/focus-order.js";
import {prepareFull, preparePrefix, type PreparedPrompt} from "../main/engine/blend/prepare.js";
import {generate} from "../main/engine/generate.js";
import {ChunkKvCache} from "../main/engine/kv/chunk-cache.js";
import type {KvBody} from "../main/engine/kv/kv-blob.js";
import {decodeKvBody, encodeKvBody, kvCodecLevelCount} from "../main/engine/kv/kv-codec.js";
import {ropeParamsFromGguf} from "../main/engine/kv/rope-params.js";
import {ggmlQuantRoundTrip} from "../test/helpers/ggml-quant.js";
import {parseSeqStateFile, serializeSeqStateFile} from "../test/helpers/seq-state-file.js";
import {buildPrompt} from "../main/engine/prompt.js";
import {answerF1, citedSources, type CorpusExample, exactMatch, makeQuestionSet, questionKinds, type QuestionKind} from "../test/fixtures/answer-corpus.js";
import {answerModelPath} from "../test/fixtures/answer-model.js";
import {benchArgs, log, Report, withTempDir} from "./harness.js";

const args = benchArgs({
    questions: {type: "string", default: "20"},
    chunks: {type: "string", default: "6"},
    seed: {type: "string", default: "7"},
    threads: {type: "string", default: process.env.WEFT_THREADS ?? "1"},
    model: {type: "string", default: answerModelPath},
    variants: {type: "string", default: ""},
    /** KV formats the sources' KV passes through (comma list): f16, L0..L5, q8_0-block, q4_0-block, q8_0, q4_0. */
    codec: {type: "string", default: ""}
});
const questions = Number.parseInt(args.questions, 10);
const chunks = Number.parseInt(args.chunks, 10);
const threads = Number.parseInt(args.threads, 10);
if (!(questions >= 1) || !(chunks >= 2) || !(threads >= 1))
    throw new Error(`--questions, --chunks (>= 2) and --threads must be positive integers, got ${args.questions}, ${args.chunks}, ${args.threads}`);

type Variant = {strategy: "full" | "prefix" | BlendStrategy, ratio: number, checkLayer?: number, focus?: FocusOptions};
const defaultVariants: Variant[] = [
    {strategy: "full", ratio: 0},
    {strategy: "prefix", ratio: 0},
    {strategy: "naive", ratio: 0},
    {strategy: "chunk-head", ratio: 0.15},
    {strategy: "hkvd", ratio: 0.05},
    {strategy: "hkvd", ratio: 0.15},
    {strategy: "hkvd", ratio: 0.3},
    {strategy: "hkvd", ratio: 0.15, focus: {count: 0, continuations: false, hops: 0}}
];
/** `strategy[@ratio][/cN][+fK[c][hN]]`, e.g. `hkvd@0.15/c2` or `chunk-head@0.15+f0`. */
function parseVariant(text: string): Variant {
    const match = /^(full|prefix|naive|chunk-head|hkvd)(?:@([0-9.]+))?(?:\/c([0-9]+))?(?:\+f([0-9]+)(c?)(?:h([0-9]+))?)?$/.exec(text.trim());
    if (match == null || (match[3] != null && match[1] !== "hkvd") || (match[4] != null && match[1] !== "hkvd" && match[1] !== "chunk-head"))
        throw new Error(`--variants: ${JSON.stringify(text)} is not strategy[@ratio], hkvd@ratio/cN or (hkvd|chunk-head)@ratio+fK[c][hN]`);
    const ratio = match[2] != null ? Number(match[2]) : 0;
    if (!(ratio >= 0 && ratio <= 1))
        throw new Error(`--variants: ratio ${match[2]} is not in [0, 1]`);
    return {
        strategy: match[1] as Variant["strategy"], ratio, ...(match[3] != null ? {checkLayer: Number(match[3])} : {}),
        ...(match[4] != null ? {focus: {count: Number(match[4]), continuations: match[5] === "c", hops: Number(match[6] ?? 0)}} : {})
    };
}
const codecFormats = args.codec === "" ? [] : args.codec.split(",").map((name) => name.trim());
for (const name of codecFormats) {
    const level = /^L([0-9]+)$/.exec(name);
    if (!(["f16", "q8_0-block", "q4_0-block", "q8_0", "q4_0"].includes(name) || (level != null && Number(level[1]) < kvCodecLevelCount)))
        throw new Error(`--codec: ${JSON.stringify(name)} is not f16, L0..L${kvCodecLevelCount - 1}, q8_0-block, q4_0-block, q8_0 or q4_0`);
}
const answerVariants: Variant[] = args.variants === "" ? (codecFormats.length > 0 ? [] : defaultVariants) : args.variants.split(",").map(parseVariant);
const focusName = (focus: FocusOptions) => `+f${focus.count}${focus.continuations ? "c" : ""}${focus.hops > 0 ? `h${focus.hops}` : ""}`;
const variantName = (variant: Variant) =>
    `${variant.strategy}@${variant.ratio}${variant.checkLayer != null ? `/c${variant.checkLayer}` : ""}${variant.focus != null ? focusName(variant.focus) : ""}`;
/** `prefix` reuses a previous prompt with the same sources and this question instead. */
const previousQuestion = "What do these notes say?";
const maxAnswerTokens = 24;

type Score = {questions: number, em: number, f1: number, cited: number, recomputed: number};
const codecFingerprint = "00112233445566778899aabbccddeeff";

/** `sourceOf` maps a number the answer cites to the example's own source number (a blend's prompt renumbers them). */
function addScore(score: Score, answer: string, example: CorpusExample, recomputedShare: number, sourceOf: (n: number) => number = (n) => n): void {
    score.questions++;
    score.em += exactMatch(answer, example.answer) ? 1 : 0;
    score.f1 += answerF1(answer, example.answer);
    const cited = citedSources(answer)[0];
    score.cited += cited != null && sourceOf(cited) === example.answerSource ? 1 : 0;
    score.recomputed += recomputedShare;
}

await withTempDir("answers", async (dir) => {
    const llama = await getLlama({gpu: false, maxThreads: threads, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath: args.model});
    const context = await model.createContext({contextSize: 1024, threads, sequences: 1});
    const sequence = context.getSequence();
    const cache = await ChunkKvCache.open({dataDir: path.join(dir, "cache"), ramBudgetBytes: 256 * 1024 ** 2, diskBudgetBytes: 256 * 1024 ** 2});
    const opened = await openBlendSession({llama, model, context, sequence, modelPath: args.model, cache, threads});
    if (!opened.available)
        throw new Error(`blend path unavailable: ${opened.reason}`);
    const blend: BlendSession = opened.value;

    // --codec: a flash-attention context (V untransposed, as the codec benchmark's) and llama.cpp's quantized caches.
    const codecContexts = new Map<string, {context: LlamaContext, sequence: LlamaContextSequence}>();
    const codecContext = async (name: string) => {
        if (!codecContexts.has(name)) {
            const type = name === "q8_0" ? "Q8_0" : name === "q4_0" ? "Q4_0" : null;
            const created = await model.createContext({
                contextSize: 1024, threads, sequences: 1, flashAttention: true,
                ...(type != null ? {experimentalKvCacheKeyType: type, experimentalKvCacheValueType: type} : {})
            });
            codecContexts.set(name, {context: created, sequence: created.getSequence()});
        }
        return codecContexts.get(name)!;
    };
    const rope = ropeParamsFromGguf(model.fileInfo);
    /** The sources' f16 KV, round-tripped through `name`. */
    const throughFormat = async (name: string, body: KvBody): Promise<KvBody> => {
        if (name === "f16")
            return body;
        if (name === "q8_0-block" || name === "q4_0-block")
            return ggmlQuantRoundTrip(body, name === "q8_0-block" ? "q8_0" : "q4_0");
        const file = await encodeKvBody(body, {level: Number(name.slice(1)), fingerprint: codecFingerprint, threads, rope});
        codecBytes.set(name, (codecBytes.get(name) ?? 0) + file.byteLength);
        return (await decodeKvBody(file, {fingerprint: codecFingerprint, threads})).body;
    };
    const codecBytes = new Map<string, number>();
    let f16Bytes = 0;

    const scores = new Map<string, Score>();
    const codecScoreOf = (name: string, kind: QuestionKind | "all") => {
        const key = `codec:${name}/${kind}`;
        if (!scores.has(key))
            scores.set(key, {questions: 0, em: 0, f1: 0, cited: 0, recomputed: 0});
        return scores.get(key)!;
    };
    const scoreOf = (variant: Variant, kind: QuestionKind | "all") => {
        const key = `${variantName(variant)}/${kind}`;
        if (!scores.has(key))
            scores.set(key, {questions: 0, em: 0, f1: 0, cited: 0, recomputed: 0});
        return scores.get(key)!;
    };

    /** The answer `weft ask` would give: greedy, until end of text or the answer length. */
    const greedyAnswer = async (target: LlamaContextSequence, tokens: Token[]): Promise<string> => {
        let answer = "";
        const steps = generate(model, target, tokens, {maxTokens: maxAnswerTokens, temperature: 0, signal: new AbortController().signal});
        for (let step = await steps.next(); step.done !== true; step = await steps.next())
            if (step.value.type === "text")
                answer += step.value.text;
        return answer;
    };

    const isNameToken = nameTokenTest(model);
    const set = makeQuestionSet(Number(args.seed), "held-out", questions, chunks);
    let promptTokens = 0;
    for (const [index, example] of set.entries()) {
        // Spans as the chunker gives them: a document's chunks in order, one separator apart (focus.ts finds continuations by them).
        const spans = new Map<string, number>();
        const sources = example.chunks.map((chunk, i) => {
            const start = spans.get(chunk.path) ?? 0;
            spans.set(chunk.path, start + chunk.text.length + 2);
            return {n: i + 1, path: chunk.path, text: chunk.text, span: [start, start + chunk.text.length] as const};
        });
        const prompt = buildPrompt(model, example.question, sources, false);
        const previous = buildPrompt(model, previousQuestion, sources, false);
        promptTokens += prompt.tokens.length;
        // Warm: every chunk's KV computed and cached before anything is compared.
        if (answerVariants.some((variant) => variant.strategy !== "full" && variant.strategy !== "prefix"))
            await blend.prepare(prompt, "naive", 0);

        // hkvd and chunk-head with focus chunks: those sources first, renumbered, as the chat service orders them
        const blendPrompt = (variant: Variant) => {
            if (variant.strategy !== "hkvd" && variant.strategy !== "chunk-head")
                return {prompt, sourceOf: (n: number) => n};
            const {prompt: moved, order} = inFocusOrder(prompt, sources, variant.focus ?? defaultFocus, isNameToken,
                (reordered) => buildPrompt(model, example.question, reordered, false));
            return {prompt: moved, sourceOf: (n: number) => order == null ? n : (order[n - 1] ?? -1) + 1};
        };
        const answers: string[] = [];
        for (const variant of answerVariants) {
            const {prompt: variantPrompt, sourceOf} = blendPrompt(variant);
            let prepared: PreparedPrompt;
            if (variant.strategy === "full")
                prepared = await prepareFull(sequence, prompt.tokens);
            else if (variant.strategy === "prefix") {
                await prepareFull(sequence, previous.tokens);
                await sequence.evaluateWithoutGeneratingNewTokens(previous.tokens.slice(sequence.nextTokenIndex));
                prepared = await preparePrefix(sequence, prompt.tokens);
            } else
                prepared = await blend.prepare(variantPrompt, variant.strategy, variant.ratio,
                    {...(variant.checkLayer != null ? {checkLayer: variant.checkLayer} : {}), ...(variant.focus != null ? {focus: variant.focus} : {})});

            const answer = await greedyAnswer(sequence, prepared.tokensToEvaluate);
            answers.push(answer.trim());
            const chunkTokens = prepared.recomputedTokens + prepared.reusedTokens;
            for (const kind of [example.kind, "all"] as const)
                addScore(scoreOf(variant, kind), answer, example, chunkTokens > 0 ? prepared.recomputedTokens / chunkTokens : 0, sourceOf);
        }

        // --codec: the sources' KV (the prompt up to its question segment) prefilled in f16 once, then per format.
        const codecAnswers: string[] = [];
        if (codecFormats.length > 0) {
            const sourcesEnd = prompt.tokens.length - prompt.segments.at(-1)!.tokens.length;
            const f16 = await codecContext("f16");
            await f16.sequence.clearHistory();
            await f16.sequence.evaluateWithoutGeneratingNewTokens(prompt.tokens.slice(0, sourcesEnd));
            const stateFile = path.join(dir, "codec-state.bin");
            await f16.sequence.saveStateToFile(stateFile);
            const body = parseSeqStateFile(await readFile(stateFile)).body;
            f16Bytes += body.layers.reduce((sum, layer) => sum + layer.k.rows.byteLength + ("rows" in layer.v ? layer.v.rows : layer.v.data).byteLength, 0);
            for (const name of codecFormats) {
                let target = f16;
                let rest = prompt.tokens.slice(sourcesEnd);
                if (name === "q8_0" || name === "q4_0") {
                    target = await codecContext(name);
                    await target.sequence.clearHistory();
                    rest = prompt.tokens;
                } else {
                    await f16.sequence.clearHistory();
                    const loadFile = path.join(dir, "codec-load.bin");
                    await writeFile(loadFile, serializeSeqStateFile(Int32Array.from(prompt.tokens.slice(0, sourcesEnd)), await throughFormat(name, body)));
                    await f16.sequence.loadStateFromFile(loadFile, {acceptRisk: true});
                }
                const answer = await greedyAnswer(target.sequence, rest);
                codecAnswers.push(answer.trim());
                for (const kind of [example.kind, "all"] as const)
                    addScore(codecScoreOf(name, kind), answer, example, 0);
            }
        }
        log(`${index + 1}/${set.length} ${example.kind}: ${JSON.stringify(example.question)} gold ${JSON.stringify(example.target)}; ` +
            [...answerVariants.map((variant, i) => `${variantName(variant)} ${JSON.stringify(answers[i])}`),
                ...codecFormats.map((name, i) => `codec ${name} ${JSON.stringify(codecAnswers[i])}`)].join(", "));
    }

    const report = new Report("answers", [
        {key: "strategy", header: "strategy"},
        ...(codecFormats.length > 0 ? [{key: "codec", header: "codec"}, {key: "ratioToF16", header: "x smaller", digits: 2}] : []),
        {key: "ratio", header: "ratio", digits: 2},
        {key: "checkLayer", header: "check layer"},
        {key: "focus", header: "focus"},
        {key: "split", header: "split"},
        {key: "questions", header: "questions"},
        {key: "em", header: "EM", digits: 1},
        {key: "f1", header: "F1", digits: 1},
        {key: "cited", header: "cites gold %", digits: 1},
        {key: "recomputedPercent", header: "recomputed %", digits: 1}
    ], args.json);
    for (const kind of [...questionKinds, "all"] as const)
        for (const variant of answerVariants) {
            const score = scoreOf(variant, kind);
            report.add({
                row: `${variantName(variant)} ${kind}`,
                strategy: variant.strategy,
                ratio: variant.ratio,
                checkLayer: variant.strategy === "hkvd" ? variant.checkLayer ?? selectionLayer : "-",
                split: kind,
                questions: score.questions,
                em: 100 * score.em / score.questions,
                f1: 100 * score.f1 / score.questions,
                cited: 100 * score.cited / score.questions,
                focus: variant.strategy === "hkvd" || variant.strategy === "chunk-head" ? focusName(variant.focus ?? defaultFocus) : "-",
                recomputedPercent: variant.strategy === "full" || variant.strategy === "prefix" ? "-" : 100 * score.recomputed / score.questions
            });
        }

    for (const kind of [...questionKinds, "all"] as const)
        for (const name of codecFormats) {
            const score = codecScoreOf(name, kind);
            const bits = name.startsWith("L") ? codecBytes.get(name)! * 8 / (f16Bytes / 2) : name === "f16" ? 16 : name.startsWith("q8_0") ? 8.5 : 4.5;
            report.add({
                row: `codec ${name} ${kind}`,
                strategy: "codec",
                codec: name,
                ratioToF16: 16 / bits,
                ratio: null,
                checkLayer: "-",
                split: kind,
                questions: score.questions,
                em: 100 * score.em / score.questions,
                f1: 100 * score.f1 / score.questions,
                cited: 100 * score.cited / score.questions,
                focus: "-",
                recomputedPercent: "-"
            });
        }

    const f1 = (strategy: string, ratio: number, kind: QuestionKind) => {
        const score = scoreOf({strategy: strategy as Variant["strategy"], ratio}, kind);
        return 100 * score.f1 / score.questions;
    };
    report.note("");
    report.note(`model ${path.basename(args.model)} (CPU, threads ${threads}); held-out questions (seed ${args.seed}), ${questions} per kind, ` +
        `${chunks} sources each, ${(promptTokens / set.length).toFixed(0)} prompt tokens on average; greedy answers up to ${maxAnswerTokens} tokens; ` +
        "EM and F1 after SQuAD normalisation with citations removed; 'cites gold': the first [n] in the answer is the gold source.");
    // a target whose rows were not run (--variants) is left out
    const check = (label: string, values: number[], pass: boolean) => {
        if (values.every((value) => Number.isFinite(value)))
            report.note(`target: ${label} (${values.map((value) => value.toFixed(1)).join(" vs ")}) -> ${pass ? "PASS" : "FAIL"}`);
    };
    for (const kind of questionKinds)
        check(`full F1 on ${kind} >= 80`, [f1("full", 0, kind)], f1("full", 0, kind) >= 80);
    for (const kind of ["two-hop", "cross-chunk"] as const)
        check(`hkvd@0.15 F1 within 2 of full on ${kind}`, [f1("hkvd", 0.15, kind), f1("full", 0, kind)], f1("hkvd", 0.15, kind) >= f1("full", 0, kind) - 2);
    check("naive F1 at least 10 below full on cross-chunk", [f1("naive", 0, "cross-chunk"), f1("full", 0, "cross-chunk")],
        f1("naive", 0, "cross-chunk") <= f1("full", 0, "cross-chunk") - 10);
    report.print();

    await blend.close();
    for (const {context: created} of codecContexts.values())
        await created.dispose();
    await context.dispose();
    await model.dispose();
});
