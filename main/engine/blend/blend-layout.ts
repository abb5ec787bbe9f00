// Where each part of a blended prompt sits: [header][chunk][label][chunk]...[tail], as token positions. The header
// and the chunks come from caches, the labels between chunks are new tokens, the tail (the question) is evaluated last.
import type {BuiltPrompt, PromptSegment} from "../prompt.js";

export type PlacedSegment = {segment: PromptSegment, start: number};
export type PlacedChunk = {segment: Extract<PromptSegment, {kind: "chunk"}>, start: number};

export type BlendLayout = {
    /** Every segment at its first position, in prompt order. */
    placed: PlacedSegment[],
    /** The first chunk's position: everything before it is the header (0 without chunks). */
    headerEnd: number,
    /** Where the question starts: right after the last chunk (0 without chunks). */
    tailStart: number,
    chunks: PlacedChunk[],
    chunkTokenCount: number,
    /** Positions of the label tokens between the chunks. */
    labelPositions: number[]
};

export function blendLayout(prompt: BuiltPrompt): BlendLayout {
    let offset = 0;
    const placed = prompt.segments.map((segment) => {
        const start = offset;
        offset += segment.tokens.length;
        return {segment, start};
    });
    const chunks = placed.filter((entry): entry is PlacedChunk => entry.segment.kind === "chunk");
    const headerEnd = chunks[0]?.start ?? 0;
    const last = chunks.at(-1);
    const tailStart = last != null ? last.start + last.segment.tokens.length : 0;
    const labelPositions = placed
        .filter(({segment, start}) => segment.kind !== "chunk" && start >= headerEnd && start < tailStart)
        .flatMap(({segment, start}) => segment.tokens.map((_, index) => start + index));
    return {placed, headerEnd, tailStart, chunks, chunkTokenCount: chunks.reduce((sum, chunk) => sum + chunk.segment.tokens.length, 0), labelPositions};
}
