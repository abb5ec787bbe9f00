import {createRequire} from "node:module";
import path from "node:path";
import type {PDFDocumentProxy} from "pdfjs-dist/legacy/build/pdf.mjs";
import type {TextItem, TextMarkedContent} from "pdfjs-dist/types/src/display/api.js";
import type {ParsedDocument} from "../types.js";
import {ParseFailure} from "./failure.js";
import {pdfOutlineMarks} from "./pdf-outline.js";
import {buildSections, type SectionMark} from "./sections.js";

type Pdfjs = typeof import("pdfjs-dist/legacy/build/pdf.mjs");

// pdfjs is large: load it on the first PDF, not when the engine starts.
let pdfjsModule: Promise<Pdfjs> | undefined;
const loadPdfjs = (): Promise<Pdfjs> => pdfjsModule ??= import("pdfjs-dist/legacy/build/pdf.mjs");

/** CMaps let CJK text without a ToUnicode map still come out as Unicode; standard fonts give correct glyph widths. */
const pdfjsRoot = path.dirname(path.dirname(path.dirname(createRequire(import.meta.url).resolve("pdfjs-dist/legacy/build/pdf.mjs"))));

/**
 * Extracts text page by page with pdfjs' in-thread ("fake") worker. Nothing executes or renders: no eval, no
 * font faces, no system fonts, no XFA, no scripting. Throws ParseFailure for password-protected and image-only files.
 */
export async function parsePdf(filePath: string, data: Uint8Array, signal: AbortSignal): Promise<ParsedDocument> {
    const pdfjs = await loadPdfjs();
    const task = pdfjs.getDocument({
        data,
        isEvalSupported: false,
        disableFontFace: true,
        useSystemFonts: false,
        enableXfa: false,
        isOffscreenCanvasSupported: false,
        isImageDecoderSupported: false,
        stopAtErrors: false,
        maxImageSize: 0,
        cMapUrl: path.join(pdfjsRoot, "cmaps") + path.sep,
        cMapPacked: true,
        standardFontDataUrl: path.join(pdfjsRoot, "standard_fonts") + path.sep,
        verbosity: pdfjs.VerbosityLevel.ERRORS
    });
    const abort = (): void => void task.destroy();
    signal.addEventListener("abort", abort, {once: true});
    try {
        let pdf: PDFDocumentProxy;
        try {
            pdf = await task.promise;
        } catch (error) {
            if ((error as Error | null)?.name === "PasswordException")
                throw new ParseFailure("error", "encrypted PDF (password required)");
            throw error;
        }
        const pageTexts: string[] = [];
        const yielder = new Yielder(signal);
        let extracted = 0;
        let firstPageError: unknown = null;
        for (let number = 1; number <= pdf.numPages; number++) {
            // One broken page should not cost the rest of the book: it counts as blank.
            const pageText = await pageTextOf(pdf, number, yielder, maxTextChars - extracted).catch((error: unknown) => {
                if (error instanceof ParseFailure || signal.aborted)
                    throw error;
                firstPageError ??= error;
                return "";
            });
            extracted += pageText.length;
            pageTexts.push(pageText);
            await yielder.checkpoint();
        }
        if (firstPageError !== null && pageTexts.every((pageText) => pageText === ""))
            throw firstPageError;
        let text = "";
        const pageMarks: SectionMark[] = [];
        pageTexts.forEach((pageText, index) => {
            if (pageText !== "" && text !== "")
                text += "\n\n";
            pageMarks.push({start: text.length, headingPath: [], page: index + 1});
            text += pageText;
        });
        if (text.trim() === "")
            throw new ParseFailure("skipped", "no extractable text (scanned or image-only PDF)");

        const metadata = await pdf.getMetadata().catch(() => null);
        const info = metadata?.info as {Title?: unknown} | undefined;
        const title = typeof info?.Title === "string" && info.Title.trim() !== "" ? info.Title.trim() : null;
        const marks = await pdfOutlineMarks(pdf, text, pageMarks).catch(() => pageMarks);
        return {path: filePath, type: "pdf", title, text, sections: buildSections(text.length, marks, true)};
    } finally {
        signal.removeEventListener("abort", abort);
        await task.destroy();
    }
}

async function pageTextOf(pdf: PDFDocumentProxy, number: number, yielder: Yielder, budget: number): Promise<string> {
    const page = await pdf.getPage(number);
    const layout = new PageLayout();
    // Streamed rather than getTextContent(), so a page with millions of items can be stopped part way.
    const reader = page.streamTextContent({includeMarkedContent: false, disableNormalization: false}).getReader();
    try {
        for (let batch = await reader.read(); !batch.done; batch = await reader.read()) {
            layout.add(batch.value.items);
            if (layout.length > budget)
                throw new ParseFailure("skipped", `too much text (over ${maxTextChars / 2 ** 20}M characters)`);
            await yielder.checkpoint();
        }
    } catch (error) {
        await reader.cancel(error instanceof Error ? error : new Error(String(error))).catch(() => undefined);
        throw error;
    } finally {
        page.cleanup();
    }
    return layout.finish();
}

/** Beyond this a PDF is a text dump or an attack; either way it is not worth holding in memory. */
const maxTextChars = 16 * 2 ** 20;

/**
 * pdfjs' in-thread worker runs entirely on microtasks, so without a deliberate macrotask break it starves timers
 * (the timeout could never fire) and everything else the engine is doing.
 */
class Yielder {
    private last = performance.now();

    constructor(private readonly signal: AbortSignal) {}

    async checkpoint(): Promise<void> {
        if (performance.now() - this.last > 25) {
            await new Promise((resolve) => setImmediate(resolve));
            this.last = performance.now();
        }
        this.signal.throwIfAborted();
    }
}

/**
 * Joins a page's text items into lines and paragraphs: pdfjs flags ends of lines, and a vertical jump of more
 * than about two line heights is taken as a paragraph break so the chunker has blank lines to split at.
 */
class PageLayout {
    private readonly parts: string[] = [];
    length = 0;
    private newlines = 1;
    private lastY: number | null = null;
    private lastHeight = 0;

    add(items: (TextItem | TextMarkedContent)[]): void {
        for (const item of items) {
            if (!("str" in item))
                continue;
            const str = item.str.replace(/(?![\t\n])\p{Cc}/gu, "");
            const y = item.transform[5] as number;
            const height = Math.abs(item.height) || this.lastHeight;
            if (str.trim() !== "") {
                if (this.lastY !== null && Math.abs(y - this.lastY) > Math.max(1, Math.min(height, this.lastHeight) * 0.5))
                    this.breakTo(Math.abs(y - this.lastY) > 2 * Math.max(height, this.lastHeight) ? 2 : 1);
                this.push(this.newlines > 0 ? str.trimStart() : str);
                this.newlines = 0;
                this.lastY = y;
                this.lastHeight = height;
            } else if (this.newlines === 0 && str !== "") {
                this.push(" ");
            }
            if (item.hasEOL)
                this.breakTo(1);
        }
    }

    finish(): string {
        return this.parts.join("").replace(/[ \t]+\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
    }

    private push(piece: string): void {
        this.parts.push(piece);
        this.length += piece.length;
    }

    private breakTo(count: number): void {
        if (this.parts.length > 0 && this.newlines < count) {
            this.push("\n".repeat(count - this.newlines));
            this.newlines = count;
        }
    }
}
