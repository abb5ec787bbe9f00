import {createHash} from "node:crypto";
import type {Chunk, ChunkOptions, ParsedDocument} from "./types.js";

export const defaultTargetTokens = 384;
export const defaultMaxTokens = 512;

/** [start, end) into the document text, always trimmed of whitespace at both ends. */
interface Piece {
    start: number;
    end: number;
}

interface Measured extends Piece {
    tokens: number;
}

/**
 * Splits a document into chunks of at most `maxTokens`. Sections are never merged; within a section the text
 * is cut at paragraphs, then sentences, then lines, then words, then token-measured slices, and neighbours are
 * packed up to `targetTokens`. Every chunk's text is exactly `doc.text.slice(...span)` and has no surrounding whitespace.
 */
export function chunkDocument(doc: ParsedDocument, options: ChunkOptions): Chunk[] {
    const maxTokens = options.maxTokens ?? defaultMaxTokens;
    const targetTokens = Math.min(options.targetTokens ?? defaultTargetTokens, maxTokens);
    if (!(maxTokens >= 1) || !(targetTokens >= 1))
        throw new RangeError(`chunk sizes must be at least 1 token (target ${targetTokens}, max ${maxTokens})`);
    const splitter = new Splitter(doc.text, options.countTokens, targetTokens, maxTokens);
    const chunks: Chunk[] = [];
    for (const section of doc.sections) {
        const span = trim(doc.text, section.start, section.end);
        if (span === null)
            continue;
        for (const piece of splitter.split(span, 0)) {
            const text = doc.text.slice(piece.start, piece.end);
            chunks.push({
                index: chunks.length,
                text,
                page: section.page,
                headingPath: [...section.headingPath],
                span: [piece.start, piece.end],
                contentHash: createHash("sha256").update(text).digest("hex"),
                tokenCount: piece.tokens
            });
        }
    }
    return chunks;
}

/** Separators tried in order, coarse to fine: paragraphs, sentences, lines, words. */
const levels: RegExp[] = [
    /\n[ \t\r\f\v]*\n\s*/g,
    /(?<=[.!?…]["'”’)\]]*)\s+|(?<=[。！？])\s*/g,
    /\n\s*/g,
    /\s+/g
];

/**
 * Holds the tokenizer and a running chars-per-token ratio learned from every measurement, so packing by
 * estimate lands near the target and the tokenizer runs about once per chunk.
 */
class Splitter {
    private measuredChars = 0;
    private measuredTokens = 0;

    constructor(
        private readonly text: string,
        private readonly countTokens: (text: string) => number,
        private readonly target: number,
        private readonly max: number
    ) {}

    split(span: Piece, level: number): Measured[] {
        if (level >= levels.length)
            return this.slice(span);
        const pieces = splitAt(this.text, span, levels[level]!);
        if (pieces.length <= 1)
            return this.split(span, level + 1);
        const out: Measured[] = [];
        this.packAndEmit(pieces, level, out);
        return out;
    }

    /**
     * Greedy packing, one group at a time so each uses the ratio its predecessors taught. A group is packed by
     * estimate, measured, then grown once more with its measured count as the base, since estimates run either way.
     */
    private packAndEmit(pieces: Piece[], level: number, out: Measured[]): void {
        for (let first = 0; first < pieces.length;) {
            let next = this.packedEnd(pieces, first, first + 1, 0);
            // A piece many times too big needs no measuring (tokenizing a megabyte is slow) to be split finer.
            if (next === first + 1 && this.estimate(pieces[first]!.start, pieces[first]!.end) > 4 * this.max) {
                out.push(...this.split(pieces[first]!, level + 1));
                first = next;
                continue;
            }
            let tokens = this.measure(pieces[first]!.start, pieces[next - 1]!.end);
            if (tokens > this.max) {
                this.overflow(pieces.slice(first, next), level, out);
                first = next;
                continue;
            }
            // Within 10% of the target is close enough not to spend another measurement.
            const grown = tokens < this.target * 0.9 ? this.packedEnd(pieces, first, next, tokens) : next;
            if (grown > next) {
                const grownTokens = this.measure(pieces[first]!.start, pieces[grown - 1]!.end);
                if (grownTokens <= this.max) {
                    next = grown;
                    tokens = grownTokens;
                }
            }
            out.push({start: pieces[first]!.start, end: pieces[next - 1]!.end, tokens});
            first = next;
        }
    }

    /**
     * Extends the group [first, next), which measures `tokens` (0: unmeasured, estimate it all), by whole pieces
     * while the estimate stays within `target`. Returns the new end index.
     */
    private packedEnd(pieces: Piece[], first: number, next: number, tokens: number): number {
        const base = tokens > 0 ? tokens : this.estimate(pieces[first]!.start, pieces[next - 1]!.end);
        const from = pieces[next - 1]!.end;
        while (next < pieces.length && base + this.estimate(from, pieces[next]!.end) <= this.target)
            next++;
        return next;
    }

    /** A group measured over `max`: split its single piece finer, or repack with the corrected ratio, or halve it. */
    private overflow(group: Piece[], level: number, out: Measured[]): void {
        if (group.length === 1) {
            out.push(...this.split(group[0]!, level + 1));
            return;
        }
        if (this.packedEnd(group, 0, 1, 0) < group.length) {
            this.packAndEmit(group, level, out);
            return;
        }
        const middle = (group[0]!.start + group[group.length - 1]!.end) / 2;
        const cut = Math.min(Math.max(1, group.findIndex((piece) => piece.end > middle)), group.length - 1);
        this.packAndEmit(group.slice(0, cut), level, out);
        this.packAndEmit(group.slice(cut), level, out);
    }

    /** Last resort, for a run without whitespace (a long token, CJK text): prefixes measured to fit `target`. */
    private slice(span: Piece): Measured[] {
        const out: Measured[] = [];
        let start = span.start;
        while (start < span.end) {
            if (this.estimate(start, span.end) <= this.target) {
                const tokens = this.measure(start, span.end);
                if (tokens <= this.max) {
                    out.push({start, end: span.end, tokens});
                    break;
                }
            }
            const fit = this.longestFit(start, span.end);
            if (fit.tokens > this.max)
                throw new RangeError(`maxTokens ${this.max} is too small: one character takes ${fit.tokens} tokens`);
            out.push(fit);
            start = fit.end;
        }
        return out;
    }

    /**
     * The longest prefix of [start, limit) measuring at most `target` tokens, or near enough (90%): proportional
     * guesses inside a shrinking bracket, so usually two or three measurements. Always at least one code point.
     */
    private longestFit(start: number, limit: number): Measured {
        let low = start;
        let lowTokens = 0;
        let high = limit + 1;
        let probe = start + Math.max(1, Math.floor(this.target * this.ratio()));
        for (;;) {
            const at = codePointBoundary(this.text, Math.min(Math.max(probe, low + 1), high - 1));
            if (at <= low || at >= high)
                break;
            const tokens = this.measure(start, at);
            if (tokens <= this.target) {
                low = at;
                lowTokens = tokens;
                if (tokens >= this.target * 0.9 || at === limit)
                    break;
            } else {
                high = at;
            }
            probe = start + Math.floor((at - start) * this.target * 0.95 / Math.max(1, tokens));
            if (probe <= low || probe >= high)
                probe = Math.floor((low + high) / 2);
        }
        if (low === start) {
            const end = codePointBoundary(this.text, start + 1, true);
            return {start, end, tokens: this.measure(start, end)};
        }
        return {start, end: low, tokens: lowTokens};
    }

    private ratio(): number {
        return this.measuredTokens > 0 ? Math.max(0.5, this.measuredChars / this.measuredTokens) : 4;
    }

    private estimate(start: number, end: number): number {
        return (end - start) / this.ratio();
    }

    private measure(start: number, end: number): number {
        const tokens = this.countTokens(this.text.slice(start, end));
        this.measuredChars += end - start;
        this.measuredTokens += tokens;
        return tokens;
    }
}

/** The trimmed pieces of [span.start, span.end) between matches of the global `separator`. */
function splitAt(text: string, span: Piece, separator: RegExp): Piece[] {
    const pieces: Piece[] = [];
    let from = span.start;
    const regex = new RegExp(separator.source, "g");
    regex.lastIndex = span.start;
    for (let match = regex.exec(text); match !== null && match.index < span.end; match = regex.exec(text)) {
        if (match[0].length === 0) {
            // A zero-width boundary (after CJK full stops): split there, then step past it.
            if (match.index > from)
                pushTrimmed(text, pieces, from, match.index);
            from = match.index;
            regex.lastIndex = match.index + 1;
            continue;
        }
        pushTrimmed(text, pieces, from, match.index);
        from = match.index + match[0].length;
    }
    pushTrimmed(text, pieces, from, span.end);
    return pieces;
}

function pushTrimmed(text: string, pieces: Piece[], start: number, end: number): void {
    const piece = trim(text, start, Math.max(start, end));
    if (piece !== null)
        pieces.push(piece);
}

function isSpace(code: number): boolean {
    return code <= 32 || code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a)
        || code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000 || code === 0xfeff;
}

function trim(text: string, start: number, end: number): Piece | null {
    while (start < end && isSpace(text.charCodeAt(start)))
        start++;
    while (end > start && isSpace(text.charCodeAt(end - 1)))
        end--;
    return end > start ? {start, end} : null;
}

/** Moves `at` off the middle of a surrogate pair (back, or forward when `forward`). */
function codePointBoundary(text: string, at: number, forward = false): number {
    const code = text.charCodeAt(at);
    const previous = text.charCodeAt(at - 1);
    if (code >= 0xdc00 && code <= 0xdfff && previous >= 0xd800 && previous <= 0xdbff)
        return forward ? at + 1 : at - 1;
    return at;
}
