import type {PDFDocumentProxy} from "pdfjs-dist/legacy/build/pdf.mjs";
import type {SectionMark} from "./sections.js";

/** A hostile outline can be huge or cyclic in depth; real ones are far smaller. */
const maxEntries = 2000;
const maxDepth = 8;

interface OutlineNode {
    title: string;
    dest: string | unknown[] | null;
    items: OutlineNode[];
}

/**
 * Adds heading paths from the PDF's bookmarks (outline) to the per-page marks. A bookmark's section starts where
 * its title appears on its target page, or at the top of that page if the title is not found in the text.
 */
export async function pdfOutlineMarks(pdf: PDFDocumentProxy, text: string, pageMarks: SectionMark[]): Promise<SectionMark[]> {
    const outline = (await pdf.getOutline()) as OutlineNode[] | null;
    if (outline === null || outline.length === 0)
        return pageMarks;

    const entries: {headingPath: string[]; page: number}[] = [];
    const visit = async (nodes: OutlineNode[], parents: string[]): Promise<void> => {
        for (const node of nodes) {
            if (entries.length >= maxEntries)
                return;
            const title = node.title.replace(/\s+/g, " ").trim();
            const headingPath = title === "" ? parents : [...parents, title];
            const page = await destinationPage(pdf, node.dest);
            if (page !== null && title !== "")
                entries.push({headingPath, page});
            if (parents.length < maxDepth)
                await visit(node.items, headingPath);
        }
    };
    await visit(outline, []);
    if (entries.length === 0)
        return pageMarks;

    const pageEnd = (page: number): number => pageMarks[page]?.start ?? text.length;
    const outlineMarks: SectionMark[] = [];
    // Keep document order where bookmarks are listed out of page order.
    entries.sort((a, b) => a.page - b.page);
    let searchFrom = 0;
    for (const entry of entries) {
        const pageStart = pageMarks[entry.page - 1]!.start;
        const from = Math.max(pageStart, searchFrom);
        const found = text.slice(from, pageEnd(entry.page)).indexOf(entry.headingPath[entry.headingPath.length - 1]!);
        const start = found >= 0 ? from + found : from;
        outlineMarks.push({start, headingPath: entry.headingPath, page: entry.page});
        searchFrom = start;
    }

    // Merge: a page mark carries the heading in force where the page begins; a bookmark at a page's top replaces it.
    const marks: SectionMark[] = [];
    let current: string[] = [];
    let next = 0;
    for (const pageMark of pageMarks) {
        while (next < outlineMarks.length && outlineMarks[next]!.start < pageMark.start)
            current = pushMark(marks, outlineMarks[next++]!);
        if (next < outlineMarks.length && outlineMarks[next]!.start === pageMark.start && outlineMarks[next]!.page === pageMark.page)
            current = pushMark(marks, outlineMarks[next++]!);
        else
            marks.push({...pageMark, headingPath: current});
    }
    while (next < outlineMarks.length)
        current = pushMark(marks, outlineMarks[next++]!);
    return marks;
}

function pushMark(marks: SectionMark[], mark: SectionMark): string[] {
    // Two bookmarks at one spot (a chapter and its first section): the deeper one describes the text.
    if (marks.length > 0 && marks[marks.length - 1]!.start === mark.start && marks[marks.length - 1]!.page === mark.page)
        marks.pop();
    marks.push(mark);
    return mark.headingPath;
}

async function destinationPage(pdf: PDFDocumentProxy, dest: string | unknown[] | null): Promise<number | null> {
    try {
        const explicit = typeof dest === "string" ? await pdf.getDestination(dest) : dest;
        const target = explicit?.[0];
        let index: number | null = null;
        if (typeof target === "number")
            index = target;
        else if (typeof target === "object" && target !== null && "num" in target)
            index = await pdf.getPageIndex(target as {num: number; gen: number});
        return index !== null && Number.isInteger(index) && index >= 0 && index < pdf.numPages ? index + 1 : null;
    } catch {
        return null;
    }
}
