// Which of a prompt's chunks the question is about, from token ids alone: a blend recomputes those chunks whole. On a
// model that answers, recomputing a scattered share of every chunk leaves the answer's own chunk unrepaired, whatever
// the share is chosen by (bench/RESULTS.md, answer quality, session 10).
import type {Token} from "node-llama-cpp";

export type FocusChunk = {
    tokens: readonly Token[],
    /** Where the chunk comes from: a chunk that continues a focus chunk in its document is recomputed too. */
    source?: {path: string, span?: readonly [number, number]}
};

export type FocusOptions = {
    /** Chunks chosen by the question's own tokens. */
    count: number,
    /** Also the chunk that continues each of those in its document (its references point back into the focus chunk). */
    continuations: boolean,
    /** Also, per question-chosen chunk, this many chunks linked to it by names only the two of them have (a second hop). */
    hops: number,
    /**
     * At most this share of the prompt's chunk tokens is recomputed whole (default {@link defaultMaxFocusShare}): chunks
     * are taken in the order chosen while they fit, so a prompt of few chunks is still mostly reused.
     */
    maxShare?: number
};

/**
 * The focus `hkvd` and `chunk-head` use unless asked otherwise: the question's chunk, its continuation and one hop.
 * On the answer model it takes hkvd 0.15 from 65.6 to 98.9 F1 over all kinds, that of full prefill (bench/RESULTS.md,
 * answer quality, sessions 10 and 11).
 */
export const defaultFocus: FocusOptions = {count: 1, continuations: true, hops: 1};

/**
 * Whether a token starts a capitalised word (a name's first piece), by its text, remembered per token: the hop links
 * chunks by names where a prompt has them (linkedChunks). Scripts without case have no such tokens; then every
 * shared token links, as before.
 */
export function nameTokenTest(model: {detokenize(tokens: readonly Token[]): string}): (token: Token) => boolean {
    const known = new Map<Token, boolean>();
    return (token) => {
        let name = known.get(token);
        if (name == null) {
            name = /^\s?\p{Lu}/u.test(model.detokenize([token]));
            known.set(token, name);
        }
        return name;
    };
}

/** A blend that recomputed every chunk whole would only be a slower full prefill. */
export const defaultMaxFocusShare = 0.5;

/**
 * Chunks whose end and the next chunk's start are at most this many characters apart are consecutive in their
 * document: the chunker trims only whitespace between neighbours (library/chunk.ts), and no chunk is this short.
 */
const continuationGapChars = 8;

/**
 * Indices of the chunks a blend recomputes whole, in the order chosen: the `count` chunks that share the most of the
 * question's tokens, each shared token weighted by how rare it is among the prompt's chunks (log((n + 1) / df), a
 * retriever's IDF: tokens every chunk has weigh almost nothing, a name weighs most); then the chunks that continue
 * them in their documents; then, per question-chosen chunk, the `hops` chunks linked to it by a name the question does
 * not say (the employer in "where is X's employer based"). Chunks sharing nothing are never chosen; ties go to the
 * earlier chunk (the retriever's better-ranked one). Chunks past `maxShare` of the chunk tokens are left out.
 */
export function questionFocus(chunks: readonly FocusChunk[], question: readonly Token[], options: FocusOptions,
    isNameToken?: (token: Token) => boolean): number[] {
    if (!(options.count > 0) || chunks.length === 0)
        return [];
    const distinct = chunks.map((chunk) => new Set(chunk.tokens));
    const documentFrequency = new Map<Token, number>();
    for (const tokens of distinct)
        for (const token of tokens)
            documentFrequency.set(token, (documentFrequency.get(token) ?? 0) + 1);
    const weight = (token: Token) => Math.log((chunks.length + 1) / (documentFrequency.get(token) ?? chunks.length + 1));
    const best = (by: ReadonlySet<Token>, count: number, except: ReadonlySet<number>): number[] => distinct
        .map((tokens, index) => {
            let score = 0;
            for (const token of tokens)
                if (by.has(token))
                    score += weight(token);
            return {index, score};
        })
        .filter((entry) => entry.score > 0 && !except.has(entry.index))
        .sort((a, b) => b.score - a.score || a.index - b.index)
        .slice(0, count)
        .map((entry) => entry.index);

    const chosen = new Set<number>();
    const asked = best(new Set(question), options.count, chosen);
    asked.forEach((index) => chosen.add(index));
    if (options.continuations)
        for (const index of asked) {
            const next = continuationOf(chunks, index);
            if (next != null)
                chosen.add(next);
        }
    for (const index of asked)
        linkedChunks(distinct, documentFrequency, index, options.hops, chosen, isNameToken).forEach((hop) => chosen.add(hop));
    const room = (options.maxShare ?? defaultMaxFocusShare) * chunks.reduce((sum, chunk) => sum + chunk.tokens.length, 0);
    let used = 0;
    return [...chosen].filter((index) => {
        if (used + chunks[index]!.tokens.length > room)
            return false;
        used += chunks[index]!.tokens.length;
        return true;
    });
}

/**
 * The `count` chunks linked to chunk `index` by the most tokens that only the two of them have (in the prompt): a name
 * the focus chunk mentions and another chunk is about. Tokens three or more chunks share (sentence patterns, words
 * like "company") link nothing in particular, and would make a chunk of the same kind look closest. Where
 * `isNameToken` marks some of those tokens as names (nameTokenTest), only they link: two chunks of one kind in a
 * prompt share their sentence words ("who lives in", "works for") with no other chunk either, and those outnumber a
 * name's pieces (bench/RESULTS.md, answer quality, session 11).
 */
function linkedChunks(distinct: ReadonlyArray<ReadonlySet<Token>>, documentFrequency: ReadonlyMap<Token, number>, index: number, count: number,
    except: ReadonlySet<number>, isNameToken?: (token: Token) => boolean): number[] {
    if (!(count > 0))
        return [];
    const shared = [...distinct[index]!].filter((token) => documentFrequency.get(token) === 2);
    const names = isNameToken != null ? shared.filter(isNameToken) : [];
    const links = names.length > 0 ? names : shared;
    return distinct
        .map((tokens, other) => ({other, score: links.filter((token) => tokens.has(token)).length}))
        .filter((entry) => entry.score > 0 && entry.other !== index && !except.has(entry.other))
        .sort((a, b) => b.score - a.score || a.other - b.other)
        .slice(0, count)
        .map((entry) => entry.other);
}

/** The chunk that starts where chunk `index` ends in the same document, if the prompt has it. */
function continuationOf(chunks: readonly FocusChunk[], index: number): number | undefined {
    const source = chunks[index]!.source;
    if (source?.span == null)
        return undefined;
    const end = source.span[1];
    const next = chunks.findIndex((chunk) => chunk.source?.path === source.path && chunk.source.span != null &&
        chunk.source.span[0] >= end && chunk.source.span[0] - end <= continuationGapChars);
    return next >= 0 ? next : undefined;
}
