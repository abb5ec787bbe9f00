import {z} from "zod";

/** The largest document `openDocument` returns; bigger files are shown by the system viewer only. */
export const maxDocumentBytes = 32 * 1024 * 1024;

/**
 * A document from the library, to show inside the app. PDFs come as their bytes (the renderer draws the page with
 * pdf.js); every other type as the text the library indexed, so a citation's span marks the same characters.
 */
export const OpenedDocument = z.discriminatedUnion("kind", [
    z.object({kind: z.literal("pdf"), path: z.string(), base64: z.string(), byteLength: z.number().int().nonnegative()}),
    z.object({kind: z.literal("text"), path: z.string(), type: z.string(), text: z.string()})
]);
export type OpenedDocument = z.infer<typeof OpenedDocument>;

export const documentEndpoints = {
    /** Only files inside a folder of the library (after resolving links); anything else is `not_found`. */
    openDocument: {input: z.object({path: z.string().min(1).max(4096)}), output: OpenedDocument},
    /** The document's real path after the same check (for the desktop app's system viewer). */
    resolveDocument: {input: z.object({path: z.string().min(1).max(4096)}), output: z.object({path: z.string()})}
} as const;
