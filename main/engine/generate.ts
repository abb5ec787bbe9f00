import type {LlamaContextSequence, LlamaModel, Token} from "node-llama-cpp";

export type GenerationStep =
    | {type: "prefilled", prefillMs: number}
    | {type: "text", text: string};

export type GenerationResult = {completionTokens: number, cancelled: boolean, firstTokenAt: number | null};

/**
 * Evaluates the rest of the prompt (the sequence already holds the part a strategy prepared) and streams decoded text. Text is released only once it
 * decodes cleanly, so a multi-byte character split across tokens never reaches the user as U+FFFD.
 */
export async function* generate(
    model: LlamaModel,
    sequence: LlamaContextSequence,
    tokensToEvaluate: Token[],
    options: {maxTokens: number, temperature: number, signal: AbortSignal}
): AsyncGenerator<GenerationStep, GenerationResult> {
    const startedAt = performance.now();
    const output: Token[] = [];
    let emittedText = "";
    let firstTokenAt: number | null = null;
    let cancelled = false;

    const maxTokens = Math.max(0, Math.min(options.maxTokens, sequence.context.contextSize - sequence.nextTokenIndex - tokensToEvaluate.length));
    if (maxTokens === 0)
        return {completionTokens: 0, cancelled: false, firstTokenAt};

    const iterator = sequence.evaluate(tokensToEvaluate, {temperature: options.temperature});
    try {
        for await (const token of iterator) {
            if (firstTokenAt == null) {
                firstTokenAt = performance.now();
                yield {type: "prefilled", prefillMs: firstTokenAt - startedAt};
            }

            if (options.signal.aborted) {
                cancelled = true;
                break;
            }

            if (model.isEogToken(token))
                break;

            output.push(token);
            const text = model.detokenize(output);
            if (!text.endsWith("\uFFFD") && text.length > emittedText.length && text.startsWith(emittedText)) {
                yield {type: "text", text: text.slice(emittedText.length)};
                emittedText = text;
            }

            if (output.length >= maxTokens)
                break;
        }
    } finally {
        await iterator.return?.(undefined);
    }

    const finalText = model.detokenize(output);
    if (finalText.length > emittedText.length && finalText.startsWith(emittedText))
        yield {type: "text", text: finalText.slice(emittedText.length)};

    return {completionTokens: output.length, cancelled: cancelled || options.signal.aborted, firstTokenAt};
}
