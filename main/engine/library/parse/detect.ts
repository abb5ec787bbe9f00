import path from "node:path";
import type {DocumentType} from "../types.js";

const proseExtensions = ["txt", "text", "log", "csv", "tsv", "rst", "adoc", "asciidoc", "org", "tex", "bib", "srt", "vtt"];

const codeExtensions = [
    "json", "jsonl", "ndjson", "yaml", "yml", "toml", "ini", "cfg", "conf", "properties", "env", "xml",
    "ts", "tsx", "mts", "cts", "js", "jsx", "mjs", "cjs", "vue", "svelte", "astro",
    "py", "pyi", "rs", "go", "java", "kt", "kts", "scala", "groovy", "gradle", "clj", "cljs",
    "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "m", "mm", "cs", "fs", "fsx", "vb", "swift", "dart", "zig", "nim",
    "rb", "php", "pl", "pm", "lua", "r", "jl", "ex", "exs", "erl", "hrl", "hs", "ml", "mli", "elm",
    "sh", "bash", "zsh", "fish", "ps1", "psm1", "bat", "cmd",
    "sql", "graphql", "gql", "proto", "thrift", "css", "scss", "sass", "less",
    "cmake", "mk", "make", "dockerfile", "tf", "hcl", "nix", "diff", "patch"
];

/** Extensionless files that are code by convention; other extensionless files are sniffed as prose. */
const codeFileNames = ["makefile", "dockerfile", "containerfile", "gemfile", "rakefile", "justfile", "cmakelists.txt", "jenkinsfile", "procfile", "vagrantfile"];

const byExtension = new Map<string, DocumentType>([
    ...proseExtensions.map((ext) => [ext, "text"] as const),
    ...codeExtensions.map((ext) => [ext, "code"] as const),
    ...["md", "markdown", "mdx", "mdown", "mkd"].map((ext) => [ext, "markdown"] as const),
    ...["html", "htm", "xhtml"].map((ext) => [ext, "html"] as const),
    ["pdf", "pdf"],
    ["docx", "docx"]
]);

export type Detected =
    | {kind: "known"; type: DocumentType}
    /** No extension: indexable as text only if the bytes sniff as text. */
    | {kind: "sniff"}
    | {kind: "unsupported"; extension: string};

export function detectType(filePath: string): Detected {
    const name = path.basename(filePath).toLowerCase();
    if (codeFileNames.includes(name))
        return {kind: "known", type: "code"};
    const extension = path.extname(name).slice(1);
    if (extension === "")
        return {kind: "sniff"};
    const type = byExtension.get(extension);
    return type === undefined ? {kind: "unsupported", extension} : {kind: "known", type};
}

const sniffBytes = 8192;

/**
 * Decodes file bytes as text, or returns null when the first 8 KB look binary (a NUL byte or invalid UTF-8).
 * UTF-16 with a byte-order mark is text despite its NULs. Past the first 8 KB, bad bytes become U+FFFD.
 */
export function decodeText(bytes: Uint8Array): string | null {
    if (bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)))
        return new TextDecoder(bytes[0] === 0xff ? "utf-16le" : "utf-16be").decode(bytes);
    const head = bytes.subarray(0, sniffBytes);
    if (head.includes(0))
        return null;
    try {
        // stream: true tolerates a multi-byte character cut at the 8 KB boundary.
        new TextDecoder("utf-8", {fatal: true}).decode(head, {stream: true});
    } catch {
        return null;
    }
    return new TextDecoder("utf-8").decode(bytes);
}
