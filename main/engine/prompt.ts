import {LlamaText, resolveChatWrapper, type ChatHistoryItem, type LlamaModel, type LlamaTextValue, type Token} from "node-llama-cpp";

export type PromptSource = {
    n: number, path: string, text: string,
    /** [start, end) of the chunk in its document's text: a blend recognises a chunk that continues another by it. */
    span?: readonly [number, number]
};

/**
 * A prompt as the pieces it was tokenized from. Each source chunk is tokenized on its own, exactly as the
 * chunk KV cache tokenizes it, so a cached chunk's KV can stand in for its tokens; every strategy,
 * the `full` baseline included, evaluates these same tokens.
 */
export type PromptSegment =
    | {kind: "fixed", tokens: Token[]}
    | {kind: "chunk", text: string, tokens: Token[], source?: {n: number, path: string, span?: readonly [number, number]}};

export type BuiltPrompt = {tokens: Token[], segments: PromptSegment[]};

const systemPrompt = "You answer questions about the user's documents. Use the numbered sources when they help, " +
    "cite them as [n], and say so when the sources do not contain the answer.";
const sourcesMarker = "\u0001WEFT_SOURCES\u0001";

/**
 * Chunk texts already tokenized, by text, for a caller that builds several prompts from the same sources (fitting them
 * to the context, putting the question's chunks first): a text always gives the same tokens, and tokenizing 32k tokens
 * again took ~70 ms of the H200 machine's CPU on the question's path (bench/GPU.md, session 14).
 */
export type ChunkTokenMemo = Map<string, Token[]>;

function chunkTokens(model: LlamaModel, text: string, memo: ChunkTokenMemo | undefined): Token[] {
    let tokens = memo?.get(text);
    if (tokens == null) {
        tokens = model.tokenize(text);
        memo?.set(text, tokens);
    }
    return tokens;
}

function sourceSegments(model: LlamaModel, sources: readonly PromptSource[], memo: ChunkTokenMemo | undefined): PromptSegment[] {
    return sources.flatMap((source, index): PromptSegment[] => [
        {kind: "fixed", tokens: model.tokenize(`${index > 0 ? "\n\n" : ""}[${source.n}] ${source.path}\n`)},
        {kind: "chunk", text: source.text, tokens: chunkTokens(model, source.text, memo),
            source: {n: source.n, path: source.path, ...(source.span != null ? {span: source.span} : {})}}
    ]);
}

function joined(segments: PromptSegment[]): BuiltPrompt {
    const nonEmpty = segments.filter((segment) => segment.tokens.length > 0);
    return {tokens: nonEmpty.flatMap((segment) => segment.tokens), segments: nonEmpty};
}

/**
 * Renders the prompt through the model's own chat template when it has one; a model without one
 * (a base model) gets plain text it can continue, since a foreign template only confuses it.
 */
export function buildPrompt(model: LlamaModel, question: string, sources: readonly PromptSource[], hasChatTemplate: boolean,
    memo?: ChunkTokenMemo): BuiltPrompt {
    if (hasChatTemplate) {
        const userText = sources.length > 0 ? `Sources:\n\n${sourcesMarker}\n\nQuestion: ${question}` : question;
        const chatHistory: ChatHistoryItem[] = [
            {type: "system", text: systemPrompt},
            {type: "user", text: userText},
            {type: "model", response: []}
        ];
        const {contextText} = resolveChatWrapper(model).generateContextState({chatHistory});
        if (sources.length === 0)
            return joined([{kind: "fixed", tokens: contextText.tokenize(model.tokenizer)}]);

        const before: LlamaTextValue[] = [];
        const after: LlamaTextValue[] = [];
        for (const value of contextText.values) {
            if (typeof value === "string" && value.includes(sourcesMarker)) {
                const [head, tail] = value.split(sourcesMarker) as [string, string];
                before.push(head);
                after.push(tail);
            } else
                (after.length > 0 ? after : before).push(value);
        }

        return joined([
            {kind: "fixed", tokens: LlamaText(before).tokenize(model.tokenizer)},
            ...sourceSegments(model, sources, memo),
            {kind: "fixed", tokens: LlamaText(after).tokenize(model.tokenizer)}
        ]);
    }

    const bos = model.tokens.bos != null && model.tokens.shouldPrependBosToken ? [model.tokens.bos] : [];
    if (sources.length === 0)
        return joined([{kind: "fixed", tokens: [...bos, ...model.tokenize(question)]}]);

    return joined([
        {kind: "fixed", tokens: bos},
        ...sourceSegments(model, sources, memo),
        {kind: "fixed", tokens: model.tokenize(`\n\nQuestion: ${question}\nAnswer:`)}
    ]);
}

/**
 * The tokens a prompt puts before its first source when that is a chunk of the document at `path`: the header and the
 * label `[1]` with the path. A chunk's lead version is computed after them (ChunkKvSource.leadKv), by background
 * warming as by a question.
 */
export function firstSourceLead(model: LlamaModel, path: string, hasChatTemplate: boolean): Token[] {
    const built = buildPrompt(model, "", [{n: 1, path, text: "."}], hasChatTemplate);
    const index = built.segments.findIndex((segment) => segment.kind === "chunk");
    if (index < 0)
        throw new Error("the prompt builder gave a source no chunk segment");
    return built.segments.slice(0, index).flatMap((segment) => segment.tokens);
}
