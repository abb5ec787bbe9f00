import {z} from "zod";
import {Citation} from "./chat.js";
import {EngineErrorShape} from "./errors.js";
import {AnswerStats} from "./stats.js";

const id = z.string().regex(/^[a-z0-9-]{1,64}$/, "not a conversation id");
const title = z.string().trim().min(1, "the title is empty").max(200);

/** One question and how it ended, as kept in a conversation: the answer with its citations and statistics. */
export const StoredTurn = z.object({
    question: z.string().min(1).max(32_000),
    answer: z.string(),
    status: z.enum(["done", "cancelled", "error"]),
    citations: z.array(Citation),
    /** Absent when the answer failed (or was stopped) before the engine sent its statistics. */
    stats: AnswerStats.nullable(),
    error: EngineErrorShape.nullable(),
    askedAt: z.string().datetime()
});
export type StoredTurn = z.infer<typeof StoredTurn>;

export const ConversationSummary = z.object({
    id,
    title,
    /** False until the user renames it: the engine titles it after its first question. */
    titledByUser: z.boolean(),
    createdAt: z.string().datetime(),
    updatedAt: z.string().datetime(),
    turnCount: z.number().int().nonnegative()
});
export type ConversationSummary = z.infer<typeof ConversationSummary>;

export const Conversation = ConversationSummary.extend({turns: z.array(StoredTurn)})
    .refine((conversation) => conversation.turns.length === conversation.turnCount, {message: "turnCount must equal turns.length"});
export type Conversation = z.infer<typeof Conversation>;

export const conversationEndpoints = {
    /** Newest first. */
    listConversations: {input: z.object({}), output: z.array(ConversationSummary)},
    getConversation: {input: z.object({id}), output: Conversation},
    createConversation: {input: z.object({title: title.optional()}), output: Conversation},
    renameConversation: {input: z.object({id, title}), output: ConversationSummary},
    deleteConversation: {input: z.object({id}), output: z.object({removed: z.boolean()})},
    /** Keeps a finished turn; the first one titles a conversation the user has not renamed. */
    appendTurn: {input: z.object({id, turn: StoredTurn}), output: ConversationSummary}
} as const;
