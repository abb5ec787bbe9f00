// Shared by the parsers, the chunker, the ingestion pipeline and the vector store.

export type DocumentType = "text" | "code" | "markdown" | "html" | "pdf" | "docx";

/**
 * A run of `ParsedDocument.text` under one heading path on one page: the span [start, end).
 * A document's sections are contiguous, in order, and together cover the whole text.
 */
export interface Section {
    headingPath: string[];
    /** 1-based page number for paginated formats (PDF), otherwise null. */
    page: number | null;
    start: number;
    end: number;
}

export interface ParsedDocument {
    path: string;
    type: DocumentType;
    title: string | null;
    /** The full extracted text with newlines normalized to "\n"; spans in sections and chunks index into it. */
    text: string;
    sections: Section[];
}

export type ParseOutcome =
    | {kind: "parsed"; doc: ParsedDocument}
    /** Deliberately not indexed (unsupported, binary, too large, empty): not a failure. */
    | {kind: "skipped"; reason: string}
    /** Should have been indexable but could not be read or parsed. */
    | {kind: "error"; reason: string};

export interface ParseOptions {
    /** Files larger than this are skipped without being read. Default 64 MiB. */
    maxBytes?: number;
    /** Gives up on one document after this long. Default 120 s. */
    timeoutMs?: number;
    /** Abandons the parse (outcome "error", reason "aborted"). */
    signal?: AbortSignal;
    /** How far a DOCX part or PDF stream, and a whole file's parts together, may decompress. */
    inflateLimits?: {entryBytes: number, totalBytes: number};
}

export interface Chunk {
    /** Position of the chunk within its document, from 0. */
    index: number;
    /** Exactly `doc.text.slice(span[0], span[1])`; never starts or ends with whitespace. */
    text: string;
    page: number | null;
    headingPath: string[];
    span: [number, number];
    /** sha256 hex of `text`. */
    contentHash: string;
    /** Measured with the `countTokens` given to the chunker. */
    tokenCount: number;
}

export interface ChunkOptions {
    /** The active model's tokenizer: may be slow, so the chunker calls it about once per chunk. */
    countTokens: (text: string) => number;
    /** Small neighbours are packed up to this size. Default 384. */
    targetTokens?: number;
    /** No chunk exceeds this. Default 512. */
    maxTokens?: number;
}
