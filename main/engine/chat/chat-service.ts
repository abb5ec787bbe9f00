import {resolveStrategy} from "../blend/auto.js";
import {defaultFocus, nameTokenTest} from "../blend/focus.js";
import {inFocusOrder} from "../blend/focus-order.js";
import {type ChatEvent, type ChatRequestParsed, type Citation, EngineError, type Strategy, toErrorShape} from "../../contract/index.js";
import type {BlendSession} from "../blend/blend.js";
import {type PreparedPrompt, prepareFull, preparePrefix} from "../blend/prepare.js";
import type {Foreground} from "../foreground.js";
import {generate} from "../generate.js";
import type {Library} from "../library/library.js";
import {backendOf, type LoadedModel} from "../llama-runtime.js";
import type {ModelHost} from "../model-host.js";
import {buildPrompt, type BuiltPrompt, type ChunkTokenMemo} from "../prompt.js";
import {answerStats, updatedPrefillMsPerToken} from "./answer-stats.js";

/** Room kept for the answer: at most this share of the context (the request's maxTokens otherwise). */
const answerRoomShare = 1 / 4;

/** A question answered: retrieve, build the prompt, prepare its KV with the strategy, generate, report. */
export class ChatService {
    public constructor(private readonly deps: {
        host: ModelHost, library: Library, foreground: Foreground,
        /** The model to answer with (the request's, else the active one; throws when none is set up). */
        requireModelId(requested?: string): string
    }) {}

    public async* chat(request: ChatRequestParsed, signal: AbortSignal): AsyncGenerator<ChatEvent> {
        const startedAt = performance.now();
        const {host, library} = this.deps;
        let release: (() => void) | null = null;
        let afterAnswer: (() => Promise<void>) | null = null;
        const endForeground = this.deps.foreground.begin();
        try {
            const modelId = this.deps.requireModelId(request.modelId);
            release = await host.lock();
            if (signal.aborted)
                throw new EngineError("cancelled", "the question was cancelled before it started");

            const loadStartedAt = performance.now();
            const loaded = await host.ensureLoaded(modelId);
            const modelLoadMs = performance.now() - loadStartedAt;
            const llama = await host.llama();

            const retrievalStartedAt = performance.now();
            const retrieved = await library.retrieve(request.question, request.topK);
            const retrievalMs = performance.now() - retrievalStartedAt;
            const requested = resolveStrategy(request.strategy, request.ratio);
            const memo: ChunkTokenMemo = new Map();
            const {prompt, citations} = inBlendOrder(loaded, request, requested.strategy, fitPrompt(loaded, request, retrieved, memo), memo);

            yield {type: "retrieval", citations, retrievalMs};
            if (prompt.tokens.length >= loaded.contextSize)
                throw new EngineError("bad_request",
                    `the prompt is ${prompt.tokens.length} tokens, more than the model's context of ${loaded.contextSize}`);

            const {prepared, cacheUncached} = await this.preparePrompt(loaded, prompt, requested.strategy, requested.ratio,
                {uncachedFallback: request.strategy == null || request.strategy === "auto"});
            afterAnswer = cacheUncached;
            const generation = generate(loaded.model, loaded.sequence, prepared.tokensToEvaluate, {
                maxTokens: request.maxTokens,
                temperature: request.temperature,
                signal
            });

            let answer = "";
            let prefillMs = 0;
            let step = await generation.next();
            while (step.done !== true) {
                const value = step.value;
                if (value.type === "prefilled") {
                    prefillMs = value.prefillMs;
                    yield {
                        type: "cacheStats",
                        stats: {
                            strategy: prepared.strategy, promptTokens: prompt.tokens.length, reusedTokens: prepared.reusedTokens,
                            recomputedTokens: prepared.recomputedTokens, freshTokens: prepared.freshTokens, prefillMs
                        }
                    };
                } else {
                    answer += value.text;
                    yield {type: "token", text: value.text};
                }
                step = await generation.next();
            }

            const result = step.value;
            loaded.prefillMsPerToken = updatedPrefillMsPerToken(loaded.prefillMsPerToken, prepared, prefillMs);
            const stats = answerStats({
                backend: backendOf(llama), modelId: loaded.info.id, prepared, promptTokens: prompt.tokens.length,
                completionTokens: result.completionTokens, prefillMsPerToken: loaded.prefillMsPerToken,
                times: {startedAt, firstTokenAt: result.firstTokenAt ?? null, finishedAt: performance.now(), modelLoadMs, retrievalMs, prefillMs}
            });
            yield {type: "done", answer, citations, stats, cancelled: result.cancelled};
        } catch (error) {
            yield {type: "error", error: toErrorShape(error)};
        } finally {
            release?.();
            endForeground();
            // Chunks a full-prefill fallback found uncached are computed now that the answer is done, under the model
            // lock; a question asked meanwhile waits for the chunk in progress only (background warming, or that
            // question, computes the rest).
            if (afterAnswer != null)
                void this.deps.host.withLock(afterAnswer).catch(() => {});
        }
    }

    /**
     * Sets the sequence up for the requested strategy, or the nearest one this build can do (and says why). With
     * `uncachedFallback` (auto), a prompt whose uncached chunks would take longer to compute than a full prefill is
     * prefilled in full (BlendPrepareOptions.uncachedFallback), and `cacheUncached` computes them for the next question (and
     * brings disk chunks the splice decoded straight into the cells into the RAM tier).
     */
    private async preparePrompt(loaded: LoadedModel, prompt: BuiltPrompt, requested: Strategy, ratio: number, options: {uncachedFallback: boolean}):
        Promise<{prepared: PreparedPrompt, cacheUncached: (() => Promise<void>) | null}> {
        const prepared = await this.prepareWith(loaded, prompt, requested, ratio, options);
        const uncached = prepared.prepared.uncachedChunks;
        return {prepared: prepared.prepared, cacheUncached: uncached != null && uncached.length > 0 && prepared.blend != null
            ? () => prepared.blend!.cacheChunks(uncached, {stop: () => this.deps.foreground.busy}) : null};
    }

    private async prepareWith(loaded: LoadedModel, prompt: BuiltPrompt, requested: Strategy, ratio: number, options: {uncachedFallback: boolean}):
        Promise<{prepared: PreparedPrompt, blend?: BlendSession}> {
        if (loaded.sequenceKvExact === false) {
            // The previous answer left blended (approximate) KV: exact prefix reuse must not build on it.
            await loaded.sequence.clearHistory();
            loaded.sequenceKvExact = true;
        }

        if (requested === "full")
            return {prepared: await prepareFull(loaded.sequence, prompt.tokens)};

        let fallbackReason: string | undefined;
        if (requested !== "prefix") {
            if (!prompt.segments.some((segment) => segment.kind === "chunk"))
                fallbackReason = "no retrieved chunks to blend for this question";
            else {
                const blend = await this.deps.host.blendSession(loaded).catch((error: unknown) => ({
                    available: false as const, reason: `the blend path failed to open: ${toErrorShape(error).message}`
                }));
                if (!blend.available)
                    fallbackReason = blend.reason;
                else {
                    loaded.sequenceKvExact = false;
                    try {
                        // a full prefill at the rate measured on earlier answers: the blend's alternative when its chunks are cold
                        const fullPrefillMs = loaded.prefillMsPerToken != null ? loaded.prefillMsPerToken * prompt.tokens.length : undefined;
                        const prepared = await blend.value.prepare(prompt, requested, ratio, {fullPrefillMs, uncachedFallback: options.uncachedFallback});
                        // a blend that fell back to a full prefill left exact KV, which the next prefix reuse can build on
                        loaded.sequenceKvExact = prepared.strategy === "full";
                        return {prepared, blend: blend.value};
                    } catch (error) {
                        // The answer still comes, by exact prefix reuse on a cleared sequence, and says why.
                        await loaded.sequence.clearHistory();
                        loaded.sequenceKvExact = true;
                        fallbackReason = `the blend failed (${toErrorShape(error).message})`;
                    }
                }
            }
        }

        const prepared = await preparePrefix(loaded.sequence, prompt.tokens);
        if (fallbackReason != null)
            prepared.fallbackReason = `${requested} unavailable: ${fallbackReason}; used exact prefix reuse`;

        return {prepared};
    }
}

function promptOf(loaded: LoadedModel, request: ChatRequestParsed, citations: readonly Citation[], memo: ChunkTokenMemo): BuiltPrompt {
    return buildPrompt(loaded.model, request.question,
        citations.map((citation) => ({n: citation.n, path: citation.path, text: citation.text ?? "", span: citation.span})), loaded.info.hasChatTemplate, memo);
}

/** The prompt with as many retrieved sources as fit: the lowest-ranked give way until the answer has room. */
function fitPrompt(loaded: LoadedModel, request: ChatRequestParsed, retrieved: Citation[], memo: ChunkTokenMemo): {prompt: BuiltPrompt, citations: Citation[]} {
    const answerRoom = Math.min(request.maxTokens, Math.floor(loaded.contextSize * answerRoomShare));
    let citations = retrieved;
    let prompt = promptOf(loaded, request, citations, memo);
    while (citations.length > 0 && prompt.tokens.length + answerRoom > loaded.contextSize) {
        citations = citations.slice(0, -1);
        prompt = promptOf(loaded, request, citations, memo);
    }
    return {prompt, citations};
}

/**
 * For the blends that recompute the question's chunks whole, those sources first and every source renumbered in its
 * new place (focus-order.ts), so that the answer's [n] and the citations agree. The same sources and labels in
 * another order: the prompt's length does not change.
 */
function inBlendOrder(loaded: LoadedModel, request: ChatRequestParsed, strategy: Strategy, fitted: {prompt: BuiltPrompt, citations: Citation[]},
    memo: ChunkTokenMemo):
    {prompt: BuiltPrompt, citations: Citation[]} {
    if (strategy !== "hkvd" && strategy !== "chunk-head")
        return fitted;
    const {prompt, sources} = inFocusOrder(fitted.prompt, fitted.citations, defaultFocus, nameTokenTest(loaded.model),
        (citations) => promptOf(loaded, request, citations, memo));
    return {prompt, citations: sources};
}
