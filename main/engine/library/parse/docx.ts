import mammoth from "mammoth";
import type {ParsedDocument} from "../types.js";
import {parseHtml, titleClass} from "./html.js";

/** Word's "Title" style is the document's name, not a heading; the HTML adapter picks it up by class. */
const styleMap = [`p[style-name='Title'] => p.${titleClass}:fresh`, "p[style-name='Subtitle'] => p:fresh"];

/** mammoth maps Heading 1-6 styles to h1-h6, so the HTML adapter recovers the heading structure. */
export async function parseDocx(filePath: string, data: Uint8Array): Promise<ParsedDocument> {
    const result = await mammoth.convertToHtml({buffer: Buffer.from(data.buffer, data.byteOffset, data.byteLength)}, {
        styleMap,
        externalFileAccess: false,
        // Images would be inlined as base64 data URIs: wasted memory, and only alt text could be indexed.
        convertImage: mammoth.images.imgElement(async () => ({src: ""}))
    });
    return parseHtml(filePath, result.value, "docx");
}
