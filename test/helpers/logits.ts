// Comparing next-token distributions: the tests and the quality benchmark use one definition of each.
import type {LlamaContextSequence, Token} from "node-llama-cpp";

export function logSoftmax(logits: ArrayLike<number>): Float64Array {
    let max = -Infinity;
    for (let i = 0; i < logits.length; i++)
        max = Math.max(max, logits[i]!);
    let sum = 0;
    for (let i = 0; i < logits.length; i++)
        sum += Math.exp(logits[i]! - max);
    const logSum = max + Math.log(sum);
    return Float64Array.from(logits, (value) => value - logSum);
}

/** KL(softmax(p) || softmax(q)) in nats, from logits (never below 0: rounding can make a tiny negative sum). */
export function klDivergence(pLogits: ArrayLike<number>, qLogits: ArrayLike<number>): number {
    const lp = logSoftmax(pLogits);
    const lq = logSoftmax(qLogits);
    let kl = 0;
    for (let i = 0; i < lp.length; i++) {
        const p = Math.exp(lp[i]!);
        if (p > 0)
            kl += p * (lp[i]! - lq[i]!);
    }
    return Math.max(0, kl);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
    if (a.length !== b.length)
        throw new Error(`cannot compare ${a.length} values with ${b.length}`);
    let max = 0;
    for (let i = 0; i < a.length; i++)
        max = Math.max(max, Math.abs(a[i]! - b[i]!));
    return max;
}

export function argmax(values: ArrayLike<number>): number {
    let best = 0;
    for (let i = 1; i < values.length; i++)
        if (values[i]! > values[best]!)
            best = i;
    return best;
}

/** Evaluates `tokens` after what the sequence holds; the full logits (one per vocabulary entry) after the last one. */
export async function logitsAfter(sequence: LlamaContextSequence, vocabularySize: number, tokens: Token[]): Promise<Float64Array> {
    const results = await sequence.controlledEvaluate(tokens.map((token, i) =>
        i === tokens.length - 1 ? [token, {generateNext: {logits: true}}] : token));
    const logits = results.at(-1)?.next?.logits;
    if (logits == null)
        throw new Error("no logits for the last token");
    const out = new Float64Array(vocabularySize);
    for (const [token, logit] of logits)
        out[token] = logit;
    return out;
}
