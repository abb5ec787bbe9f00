import {resolveChatWrapper, type ChatHistoryItem, type LlamaModel, type Token} from "node-llama-cpp";

export type PromptSource = {n: number, path: string, text: string};

const systemPrompt = "You answer questions about the user's documents. Use the numbered sources when they help, " +
    "cite them as [n], and say so when the sources do not contain the answer.";

function sourcesBlock(sources: readonly PromptSource[]): string {
    return sources.map((source) => `[${source.n}] ${source.path}\n${source.text.trim()}`).join("\n\n");
}

/**
 * Renders the prompt through the model's own chat template when it has one; a model without one
 * (a base model) gets plain text it can continue, since a foreign template only confuses it.
 */
export function buildPromptTokens(model: LlamaModel, question: string, sources: readonly PromptSource[], hasChatTemplate: boolean): Token[] {
    if (hasChatTemplate) {
        const userText = sources.length > 0
            ? `Sources:\n\n${sourcesBlock(sources)}\n\nQuestion: ${question}`
            : question;
        const chatHistory: ChatHistoryItem[] = [
            {type: "system", text: systemPrompt},
            {type: "user", text: userText},
            {type: "model", response: []}
        ];
        const {contextText} = resolveChatWrapper(model).generateContextState({chatHistory});
        return contextText.tokenize(model.tokenizer);
    }

    const text = sources.length > 0
        ? `${sourcesBlock(sources)}\n\nQuestion: ${question}\nAnswer:`
        : question;
    const tokens = model.tokenize(text);
    const bos = model.tokens.bos;
    return bos != null && model.tokens.shouldPrependBosToken ? [bos, ...tokens] : tokens;
}
