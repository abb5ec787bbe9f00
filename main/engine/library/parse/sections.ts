import type {Section} from "../types.js";

/** Where a section begins; it runs until the next mark (or the end of the text). */
export interface SectionMark {
    start: number;
    headingPath: string[];
    page: number | null;
}

/**
 * Turns start marks into contiguous sections covering [0, textLength). Text before the first mark gets an
 * untitled section. Empty sections are dropped unless `keepEmpty` (PDF pages must each keep one).
 */
export function buildSections(textLength: number, marks: SectionMark[], keepEmpty = false): Section[] {
    const sorted = [...marks].sort((a, b) => a.start - b.start);
    if (sorted.length === 0 || sorted[0]!.start > 0)
        sorted.unshift({start: 0, headingPath: [], page: sorted[0]?.page ?? null});
    const sections: Section[] = [];
    for (let i = 0; i < sorted.length; i++) {
        const mark = sorted[i]!;
        const start = Math.min(mark.start, textLength);
        const end = Math.min(sorted[i + 1]?.start ?? textLength, textLength);
        if (end > start || keepEmpty)
            sections.push({headingPath: mark.headingPath, page: mark.page, start, end});
    }
    return sections;
}

/** Keeps a stack of open headings so each new heading knows its ancestors. */
export class HeadingStack {
    private readonly open: {level: number; text: string}[] = [];

    push(level: number, text: string): string[] {
        while (this.open.length > 0 && this.open[this.open.length - 1]!.level >= level)
            this.open.pop();
        this.open.push({level, text});
        return this.open.map((heading) => heading.text);
    }
}

export function normalizeNewlines(text: string): string {
    return text.replace(/\r\n?/g, "\n");
}
