import {z} from "zod";
import {EngineErrorShape} from "./errors.js";
import {AnswerStats, CacheStats, RequestedStrategy} from "./stats.js";

export const Citation = z.object({
    /** The number the answer uses, as in "[2]". */
    n: z.number().int().positive(),
    path: z.string(),
    page: z.number().int().positive().nullable(),
    span: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
    score: z.number(),
    text: z.string().optional(),
    /** sha256 of the chunk text: the key of its KV cache. */
    contentHash: z.string().optional()
});
export type Citation = z.infer<typeof Citation>;

export const ChatRequest = z.object({
    question: z.string().trim().min(1, "the question is empty").max(32_000),
    /** Model registry id; the active model when absent. */
    modelId: z.string().optional(),
    maxTokens: z.number().int().positive().max(8192).default(256),
    temperature: z.number().min(0).max(2).default(0),
    /** How many chunks to retrieve from the library. */
    topK: z.number().int().min(0).max(32).default(4),
    /** Absent means `auto`. */
    strategy: RequestedStrategy.optional(),
    /** The share of the chunk tokens hkvd and chunk-head recompute, their focus chunks included (`auto` brings its own). */
    ratio: z.number().min(0).max(1).default(0.15)
});
export type ChatRequest = z.input<typeof ChatRequest>;
export type ChatRequestParsed = z.output<typeof ChatRequest>;

export const ChatEvent = z.discriminatedUnion("type", [
    z.object({type: z.literal("retrieval"), citations: z.array(Citation), retrievalMs: z.number().nonnegative()}),
    z.object({type: z.literal("cacheStats"), stats: CacheStats}),
    z.object({type: z.literal("token"), text: z.string()}),
    z.object({type: z.literal("done"), answer: z.string(), citations: z.array(Citation), stats: AnswerStats, cancelled: z.boolean()}),
    z.object({type: z.literal("error"), error: EngineErrorShape})
]);
export type ChatEvent = z.infer<typeof ChatEvent>;

/** `weft ask --json` prints exactly one of these. */
export const AskResult = z.object({
    answer: z.string(),
    citations: z.array(Citation),
    stats: AnswerStats
});
export type AskResult = z.infer<typeof AskResult>;
