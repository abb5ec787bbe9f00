import {Parser} from "htmlparser2";
import type {DocumentType, ParsedDocument} from "../types.js";
import {buildSections, HeadingStack, normalizeNewlines, type SectionMark} from "./sections.js";

/** Content that is code, chrome or invisible: indexing it would pollute retrieval. */
const dropped = new Set(["script", "style", "nav", "noscript", "template", "svg", "math", "iframe", "object", "canvas", "select", "datalist"]);

/** Elements that end a paragraph (the chunker splits at blank lines). */
const blocks = new Set([
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "pre", "ul", "ol", "dl",
    "table", "thead", "tbody", "tfoot", "figure", "figcaption", "address", "details", "summary", "form", "fieldset",
    "hr", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "body", "html"
]);

/** Elements that start a new line but keep their siblings in one paragraph. */
const lines = new Set(["li", "tr", "dt", "dd", "option"]);

/** Marks the paragraph mammoth makes from a Word "Title" so it becomes the document title. */
export const titleClass = "weft-doc-title";

/**
 * Appends text while remembering only how it ends: re-reading the growing string (regexes anchored at $,
 * charAt on a rope) would make large pages quadratic.
 */
class TextBuilder {
    private readonly parts: string[] = [];
    length = 0;
    private trailingNewlines = 0;
    private endsInSpace = false;

    emit(piece: string): void {
        if (piece === "")
            return;
        this.parts.push(piece);
        this.length += piece.length;
        let newlines = 0;
        while (newlines < piece.length && piece.charCodeAt(piece.length - 1 - newlines) === 10)
            newlines++;
        this.trailingNewlines = newlines === piece.length ? this.trailingNewlines + newlines : newlines;
        this.endsInSpace = /\s/.test(piece[piece.length - 1]!);
    }

    /** Ends the current line (1) or paragraph (2) unless it already is. */
    breakTo(newlines: number): void {
        if (this.length > 0 && this.trailingNewlines < newlines)
            this.emit("\n".repeat(newlines - this.trailingNewlines));
    }

    get atLineStart(): boolean {
        return this.length === 0 || this.trailingNewlines > 0;
    }

    /** A separating space, only between two pieces of content. */
    space(): void {
        if (this.length > 0 && !this.endsInSpace)
            this.emit(" ");
    }

    toString(): string {
        return this.parts.join("");
    }
}

/**
 * Renders HTML to readable text: whitespace collapsed as a browser would, blocks separated by blank lines,
 * headings h1-h6 opening sections. The title is <title>, else a `titleClass` element, else the first h1.
 */
export function parseHtml(filePath: string, html: string, type: DocumentType = "html"): ParsedDocument {
    const out = new TextBuilder();
    let pendingSpace = false;
    const marks: SectionMark[] = [];
    const headings = new HeadingStack();
    // One entry per open element: was it dropped, so that closing it restores the state.
    const openDropped: boolean[] = [];
    let dropDepth = 0;
    let preDepth = 0;
    let heading: {level: number; start: number; text: string} | null = null;
    let inTitle = false;
    let titleText = "";
    let classTitle: string | null = null;
    /** Stack depth of the open `titleClass` element, while it is open. */
    let classTitleOpen: number | null = null;
    let firstH1: string | null = null;

    const append = (raw: string): void => {
        if (preDepth > 0) {
            if (pendingSpace)
                out.space();
            pendingSpace = false;
            out.emit(raw);
            return;
        }
        const body = raw.trim();
        if (body === "") {
            pendingSpace ||= raw !== "";
            return;
        }
        if (pendingSpace || /^\s/.test(raw))
            out.space();
        out.emit(body.replace(/\s+/g, " "));
        pendingSpace = /\s$/.test(raw);
    };
    const breakTo = (newlines: number): void => {
        pendingSpace = false;
        out.breakTo(newlines);
    };

    html = normalizeNewlines(html);
    const parser = new Parser({
        onopentag(name, attributes) {
            const drop = dropped.has(name) || "hidden" in attributes || attributes["aria-hidden"] === "true";
            openDropped.push(drop);
            if (drop)
                dropDepth++;
            if (dropDepth > 0)
                return;
            if (name === "title")
                inTitle = true;
            if (classTitle === null && (attributes.class ?? "").split(/\s+/).includes(titleClass)) {
                classTitle = "";
                classTitleOpen = openDropped.length;
            }
            if (name === "pre")
                preDepth++;
            if (blocks.has(name))
                breakTo(2);
            else if (lines.has(name))
                breakTo(1);
            if (name === "br") {
                pendingSpace = false;
                out.emit("\n");
            } else if (name === "li") {
                out.emit("- ");
            } else if ((name === "td" || name === "th") && !out.atLineStart) {
                // Cells of one row stay on one line, visibly separated.
                pendingSpace = false;
                out.emit(" | ");
            } else if (name === "img" && attributes.alt) {
                append(` ${attributes.alt} `);
            }
            const level = /^h([1-6])$/.exec(name);
            if (level !== null && heading === null)
                heading = {level: Number(level[1]), start: out.length, text: ""};
        },
        ontext(data) {
            if (dropDepth > 0)
                return;
            if (inTitle) {
                titleText += data;
                return;
            }
            if (heading !== null)
                heading.text += data;
            if (classTitleOpen !== null)
                classTitle += data;
            append(data);
        },
        onclosetag(name) {
            if (openDropped.pop() ?? false) {
                dropDepth--;
                return;
            }
            if (dropDepth > 0)
                return;
            if (name === "title")
                inTitle = false;
            if (classTitleOpen !== null && openDropped.length < classTitleOpen)
                classTitleOpen = null;
            if (name === "pre")
                preDepth = Math.max(0, preDepth - 1);
            if (heading !== null && name === `h${heading.level}`) {
                const headingText = heading.text.replace(/\s+/g, " ").trim();
                if (headingText !== "") {
                    marks.push({start: heading.start, headingPath: headings.push(heading.level, headingText), page: null});
                    if (heading.level === 1)
                        firstH1 ??= headingText;
                }
                heading = null;
            }
            if (blocks.has(name))
                breakTo(2);
            else if (lines.has(name))
                breakTo(1);
        }
    }, {decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true});
    parser.write(html);
    parser.end();

    const text = out.toString().trimEnd();
    const title = [titleText, classTitle, firstH1]
        .map((candidate) => (candidate ?? "").replace(/\s+/g, " ").trim())
        .find((candidate) => candidate !== "") ?? null;
    return {path: filePath, type, title, text, sections: buildSections(text.length, marks)};
}
