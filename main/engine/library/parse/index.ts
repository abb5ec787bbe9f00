import {open, stat} from "node:fs/promises";
import type {DocumentType, ParseOptions, ParseOutcome, ParsedDocument} from "../types.js";
import {decodeText, detectType} from "./detect.js";
import {parseDocx} from "./docx.js";
import {errorMessage, fileErrorReason, formatBytes, formatDuration, ParseFailure} from "./failure.js";
import {parseHtml} from "./html.js";
import {checkDocxEntries, checkPdfStreams} from "./inflate-limits.js";
import {parseMarkdown} from "./markdown.js";
import {parsePdf} from "./pdf.js";
import {parseText} from "./text.js";

export const defaultMaxBytes = 64 * 1024 * 1024;
export const defaultTimeoutMs = 120_000;

/**
 * Reads and parses one file. Never throws for a bad file: unsupported, binary, empty and oversized files come
 * back "skipped", unreadable or corrupt ones "error", each with a reason fit to show the user.
 */
export async function parseDocument(filePath: string, options: ParseOptions = {}): Promise<ParseOutcome> {
    const maxBytes = options.maxBytes ?? defaultMaxBytes;
    const detected = detectType(filePath);
    if (detected.kind === "unsupported")
        return {kind: "skipped", reason: `unsupported type .${detected.extension}`};

    const signals = [AbortSignal.timeout(options.timeoutMs ?? defaultTimeoutMs)];
    if (options.signal !== undefined)
        signals.push(options.signal);
    const signal = AbortSignal.any(signals);
    let type: DocumentType | null = detected.kind === "known" ? detected.type : null;
    try {
        const data = await readBounded(filePath, maxBytes);
        if (data === null)
            return {kind: "skipped", reason: "empty file"};
        signal.throwIfAborted();
        if (type === null || !binaryTypes.has(type)) {
            const text = decodeText(data);
            if (text === null)
                return {kind: "skipped", reason: "binary file"};
            type ??= "text";
            return {kind: "parsed", doc: parseDecoded(filePath, text, type)};
        }
        return {kind: "parsed", doc: await untilAborted(parseBinary(filePath, data, type, signal, options), signal)};
    } catch (error) {
        if (error instanceof ParseFailure)
            return {kind: error.outcome, reason: error.reason};
        if (signal.aborted)
            return {kind: "error", reason: options.signal?.aborted ? "aborted" : `timed out after ${formatDuration(options.timeoutMs ?? defaultTimeoutMs)}`};
        const fileReason = fileErrorReason(error);
        if (fileReason !== null)
            return {kind: "error", reason: fileReason};
        return {kind: "error", reason: `${type === "pdf" ? "corrupt PDF" : type === "docx" ? "corrupt DOCX" : "could not parse"}: ${errorMessage(error)}`};
    }
}

const binaryTypes = new Set<DocumentType>(["pdf", "docx"]);

function parseDecoded(filePath: string, text: string, type: DocumentType): ParsedDocument {
    if (type === "markdown")
        return parseMarkdown(filePath, text);
    if (type === "html")
        return parseHtml(filePath, text);
    return parseText(filePath, text, type === "code" ? "code" : "text");
}

function parseBinary(filePath: string, data: Uint8Array, type: DocumentType, signal: AbortSignal, options: ParseOptions): Promise<ParsedDocument> {
    // Measured before the parser sees the data (pdfjs takes the buffer over).
    if (type === "pdf")
        checkPdfStreams(data, options.inflateLimits);
    else
        checkDocxEntries(data, options.inflateLimits);

    return type === "pdf" ? parsePdf(filePath, data, signal) : parseDocx(filePath, data);
}

/** Rejects as soon as `signal` aborts, so a parser that cannot be interrupted is at least abandoned. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        signal.addEventListener("abort", onAbort, {once: true});
        work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
}

/**
 * Refuses oversized files before reading a byte, then reads at most the size it saw. The path is stat'ed before
 * opening because opening a FIFO blocks until a writer appears. Null means the file is empty.
 */
async function readBounded(filePath: string, maxBytes: number): Promise<Uint8Array | null> {
    const checkSize = (stat: {size: number; isFile(): boolean}): void => {
        if (!stat.isFile())
            throw new ParseFailure("skipped", "not a regular file");
        if (stat.size > maxBytes)
            throw new ParseFailure("skipped", `too large (${formatBytes(stat.size)} > ${formatBytes(maxBytes)} limit)`);
    };
    checkSize(await stat(filePath));
    const handle = await open(filePath, "r");
    try {
        // The file may have been replaced or grown since the first look.
        const current = await handle.stat();
        checkSize(current);
        // A fresh buffer, not a pooled slice: pdfjs takes ownership of (detaches) the memory it is given.
        const data = new Uint8Array(current.size);
        let filled = 0;
        while (filled < data.length) {
            const {bytesRead} = await handle.read(data, filled, data.length - filled, filled);
            if (bytesRead === 0)
                break;
            filled += bytesRead;
        }
        return filled === 0 ? null : data.subarray(0, filled);
    } finally {
        await handle.close();
    }
}
