import {Lexer, type Token, type Tokens} from "marked";
import type {ParsedDocument} from "../types.js";
import {buildSections, HeadingStack, normalizeNewlines, type SectionMark} from "./sections.js";

/** YAML front matter; the key on its first line tells it apart from a document that opens with a rule (---). */
const frontMatter = /^---\n([\w-]+[ \t]*:[\s\S]*?)\n(?:---|\.\.\.)(?:\n|$)/;

/** Keeps the Markdown source as the text (it reads well to a model) and takes structure from top-level headings. */
export function parseMarkdown(filePath: string, source: string): ParsedDocument {
    let text = normalizeNewlines(source);
    let title: string | null = null;
    // Front matter would lex as a setext heading; it is metadata, so only its title survives.
    const matter = frontMatter.exec(text);
    if (matter !== null) {
        title = yamlTitle(matter[1]!);
        text = text.slice(matter[0].length);
    }

    // A fresh lexer, not the global `marked`, so nobody else's marked.use() changes how files are indexed.
    const tokens = Lexer.lex(text, {gfm: true});
    const marks: SectionMark[] = [];
    // Offsets come from summing raw lengths; if marked ever rewrites the source, fall back to one section.
    if (tokens.map((token) => token.raw).join("") === text) {
        const headings = new HeadingStack();
        let offset = 0;
        for (const token of tokens) {
            if (token.type === "heading") {
                const heading = token as Tokens.Heading;
                const headingText = inlineText(heading.tokens).trim();
                if (headingText !== "") {
                    marks.push({start: offset, headingPath: headings.push(heading.depth, headingText), page: null});
                    if (title === null && heading.depth === 1)
                        title = headingText;
                }
            }
            offset += token.raw.length;
        }
    }
    return {path: filePath, type: "markdown", title, text, sections: buildSections(text.length, marks)};
}

function inlineText(tokens: Token[] | undefined): string {
    let out = "";
    for (const token of tokens ?? []) {
        if ("tokens" in token && Array.isArray(token.tokens) && token.tokens.length > 0)
            out += inlineText(token.tokens);
        else if (token.type === "br")
            out += " ";
        else if (token.type === "html")
            continue;
        else if ("text" in token && typeof token.text === "string")
            out += token.text;
    }
    return out.replace(/\s+/g, " ");
}

function yamlTitle(yaml: string): string | null {
    const line = /^title:[ \t]*(.+?)[ \t]*$/m.exec(yaml);
    if (line === null)
        return null;
    const value = line[1]!.replace(/^(["'])(.*)\1$/, "$2").trim();
    return value === "" ? null : value;
}
