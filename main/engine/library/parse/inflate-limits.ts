import {constants, inflateRawSync, inflateSync} from "node:zlib";
import {formatBytes, ParseFailure} from "./failure.js";

/** A compressed part may expand to at most this (a DOCX entry, a PDF stream); the whole file to at most `totalBytes`. */
export type InflateLimits = {entryBytes: number, totalBytes: number};
export const defaultInflateLimits: InflateLimits = {entryBytes: 128 * 1024 * 1024, totalBytes: 512 * 1024 * 1024};

/**
 * Inflates `compressed` only to measure it, refusing past `limit`: zlib stops at maxOutputLength, so a bomb costs
 * at most the limit, never its full size. Damaged data is not this check's business (the parser reports it): null.
 */
function inflatedSize(compressed: Uint8Array, raw: boolean, limit: number): number | "too large" | null {
    try {
        const options = {maxOutputLength: Math.max(1, limit), finishFlush: constants.Z_SYNC_FLUSH};
        return (raw ? inflateRawSync(compressed, options) : inflateSync(compressed, options)).length;
    } catch (error) {
        return (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" || error instanceof RangeError ? "too large" : null;
    }
}

/**
 * A DOCX is a ZIP: every deflated XML part is measured before mammoth inflates it whole (its sizes in the directory
 * can lie, so they are checked and then the data itself).
 */
export function checkDocxEntries(data: Uint8Array, limits: InflateLimits = defaultInflateLimits): void {
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const end = view.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (end < 0 || end + 22 > view.length)
        return; // Not a ZIP the check can read; mammoth reports it.

    const entries = view.readUInt16LE(end + 10);
    let at = view.readUInt32LE(end + 16);
    let total = 0;
    for (let index = 0; index < entries && at + 46 <= view.length && view.readUInt32LE(at) === 0x02014b50; index++) {
        const method = view.readUInt16LE(at + 10);
        const compressed = view.readUInt32LE(at + 20);
        const declared = view.readUInt32LE(at + 24);
        const nameLength = view.readUInt16LE(at + 28);
        const name = view.toString("utf8", at + 46, at + 46 + nameLength);
        const local = view.readUInt32LE(at + 42);
        at += 46 + nameLength + view.readUInt16LE(at + 30) + view.readUInt16LE(at + 32);
        if (!/\.(xml|rels)$/i.test(name))
            continue; // Images and other media are never inflated by the parser.

        if (declared > limits.entryBytes)
            throw tooLarge(`DOCX part ${name}`, limits.entryBytes);

        if (method !== 8 || local + 30 > view.length || view.readUInt32LE(local) !== 0x04034b50)
            continue;

        const start = local + 30 + view.readUInt16LE(local + 26) + view.readUInt16LE(local + 28);
        const size = inflatedSize(view.subarray(start, Math.min(view.length, start + compressed)), true, limits.entryBytes);
        if (size === "too large")
            throw tooLarge(`DOCX part ${name}`, limits.entryBytes);

        total += size ?? 0;
        if (total > limits.totalBytes)
            throw tooLarge("the DOCX's parts together", limits.totalBytes);
    }
}

const streamKeyword = Buffer.from("stream");
const endstreamKeyword = Buffer.from("endstream");

/**
 * Measures a PDF's Flate streams other than images (pdfjs inflates content, object and font streams whole, in memory,
 * while extracting text). Streams are found by their keywords in the raw file, which is enough for a bound.
 */
export function checkPdfStreams(data: Uint8Array, limits: InflateLimits = defaultInflateLimits): void {
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let total = 0;
    let from = 0;
    for (;;) {
        const keyword = view.indexOf(streamKeyword, from);
        if (keyword < 0)
            return;

        from = keyword + streamKeyword.length;
        if (keyword >= 3 && view.toString("latin1", keyword - 3, keyword) === "end")
            continue;

        let start = from;
        if (view[start] === 0x0d)
            start++;
        if (view[start] !== 0x0a)
            continue;
        start++;

        const dictionary = view.toString("latin1", Math.max(0, keyword - 2048), keyword);
        const objectAt = dictionary.lastIndexOf(" obj");
        const ownDictionary = objectAt >= 0 ? dictionary.slice(objectAt) : dictionary;
        const end = view.indexOf(endstreamKeyword, start);
        if (end < 0)
            return;

        from = end + endstreamKeyword.length;
        if (!/\/FlateDecode/.test(ownDictionary) || /\/Subtype\s*\/Image/.test(ownDictionary))
            continue;

        const size = inflatedSize(view.subarray(start, end), false, limits.entryBytes);
        if (size === "too large")
            throw tooLarge(`a PDF stream at byte ${keyword}`, limits.entryBytes);

        total += size ?? 0;
        if (total > limits.totalBytes)
            throw tooLarge("the PDF's streams together", limits.totalBytes);
    }
}

function tooLarge(what: string, limit: number): ParseFailure {
    return new ParseFailure("error", `${what} expands past ${formatBytes(limit)} (a decompression bomb, or too large to index)`);
}
