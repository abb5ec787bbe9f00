import type {ParsedDocument} from "../types.js";
import {normalizeNewlines} from "./sections.js";

/** Plain text and source code carry no structure the chunker can use beyond blank lines. */
export function parseText(filePath: string, source: string, type: "text" | "code"): ParsedDocument {
    const text = normalizeNewlines(source);
    return {
        path: filePath,
        type,
        title: null,
        text,
        sections: text.length > 0 ? [{headingPath: [], page: null, start: 0, end: text.length}] : []
    };
}
