// The document parsers against generated fixtures (real pdfjs, mammoth, marked, htmlparser2) and every bad input
// the dispatcher must turn into an outcome instead of an exception.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {chmod, mkdir, stat, truncate, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {fileURLToPath} from "node:url";
import {PDFDocument, PDFName} from "pdf-lib";
import {fileErrorReason, formatBytes} from "../../main/engine/library/parse/failure.js";
import {parseDocument} from "../../main/engine/library/parse/index.js";
import type {ParseOutcome, ParsedDocument} from "../../main/engine/library/types.js";
import {type DocFixtures, makeDocs, markers} from "../fixtures/make-docs.js";
import {makeTempDir} from "../helpers/paths.js";

const parseModule = fileURLToPath(new URL("../../main/engine/library/parse/index.ts", import.meta.url));

let temp: {dir: string; cleanup(): Promise<void>};
let docs: DocFixtures;

before(async () => {
    temp = await makeTempDir("weft-parse-");
    docs = await makeDocs(path.join(temp.dir, "docs"));
});
after(() => temp.cleanup());

async function parsed(filePath: string): Promise<ParsedDocument> {
    const outcome = await parseDocument(filePath);
    assert.equal(outcome.kind, "parsed", `expected ${filePath} to parse, got ${JSON.stringify(outcome)}`);
    const doc = (outcome as Extract<ParseOutcome, {kind: "parsed"}>).doc;
    assertSectionsCover(doc);
    return doc;
}

/** The contract every adapter keeps: sections are contiguous, in order, and span the whole text. */
function assertSectionsCover(doc: ParsedDocument): void {
    let at = 0;
    for (const section of doc.sections) {
        assert.equal(section.start, at, `section ${JSON.stringify(section)} leaves a gap or overlaps`);
        assert.ok(section.end >= section.start);
        at = section.end;
    }
    assert.equal(at, doc.text.length, "sections must end at the end of the text");
}

function sectionAt(doc: ParsedDocument, needle: string): ParsedDocument["sections"][number] {
    const at = doc.text.indexOf(needle);
    assert.ok(at >= 0, `"${needle}" missing from the text`);
    const section = doc.sections.find((candidate) => candidate.start <= at && at < candidate.end);
    assert.ok(section !== undefined);
    assert.ok(at + needle.length <= section.end, `"${needle}" straddles a section boundary`);
    return section;
}

describe("parseDocument: supported types", () => {
    it("markdown keeps heading paths, ignores # inside code, takes the front-matter title", async () => {
        const doc = await parsed(docs.markdown);
        assert.equal(doc.type, "markdown");
        assert.equal(doc.title, "The Weft Guide");
        assert.ok(!doc.text.includes("tags: [docs]"), "front matter is metadata, not text");
        assert.deepEqual(sectionAt(doc, "Intro paragraph").headingPath, []);
        assert.deepEqual(sectionAt(doc, "answers questions").headingPath, ["Weft Guide"]);
        assert.deepEqual(sectionAt(doc, "Run the installer").headingPath, ["Weft Guide", "Installation"]);
        assert.deepEqual(sectionAt(doc, "this line is code").headingPath, ["Weft Guide", "Installation"]);
        assert.deepEqual(sectionAt(doc, "AppImage").headingPath, ["Weft Guide", "Installation", "On Linux"]);
        assert.deepEqual(sectionAt(doc, "your** documents").headingPath, ["Weft Guide", "Usage"]);
        assert.ok(doc.sections.every((section) => section.page === null));
    });

    it("markdown: setext headings, skipped levels, inline markup in headings, CRLF", async () => {
        const file = path.join(temp.dir, "misc.md");
        await writeFile(file, "Top *Title*\r\n===\r\n\r\nbody one\r\n\r\n#### Deep `code` [link](x)\r\n\r\nbody two\r\n\r\n## Back Up\r\n\r\nbody three\r\n");
        const doc = await parsed(file);
        assert.equal(doc.title, "Top Title");
        assert.ok(!doc.text.includes("\r"));
        assert.deepEqual(sectionAt(doc, "body one").headingPath, ["Top Title"]);
        assert.deepEqual(sectionAt(doc, "body two").headingPath, ["Top Title", "Deep code link"]);
        assert.deepEqual(sectionAt(doc, "body three").headingPath, ["Top Title", "Back Up"]);

        // Opening with a rule is not front matter: nothing may be dropped.
        const ruled = path.join(temp.dir, "ruled.md");
        await writeFile(ruled, "---\n\nFirst part.\n\n---\n\nSecond part.\n");
        assert.equal((await parsed(ruled)).text, "---\n\nFirst part.\n\n---\n\nSecond part.\n");
    });

    it("html drops script, style and nav, collapses whitespace, keeps headings and the <title>", async () => {
        const doc = await parsed(docs.html);
        assert.equal(doc.type, "html");
        assert.equal(doc.title, "Weft & Friends");
        for (const hidden of [markers.htmlScript, markers.htmlStyle, markers.htmlNav, "Home", "console.log"])
            assert.ok(!doc.text.includes(hidden), `"${hidden}" leaked into the text`);
        assert.ok(doc.text.includes("Weft is a local RAG app."));
        assert.ok(doc.text.includes("- Fast first token\n- Private by design"));
        assert.ok(doc.text.includes("Format | Supported\nPDF | yes"));
        assert.ok(doc.text.includes("No cloud.\nNo tracking."));
        assert.deepEqual(sectionAt(doc, "local RAG").headingPath, ["Weft Overview"]);
        assert.deepEqual(sectionAt(doc, "Private by design").headingPath, ["Weft Overview", "Features"]);
        assert.deepEqual(sectionAt(doc, "No tracking").headingPath, ["Weft Overview", "Limits"]);
    });

    it("html: hidden elements dropped, <pre> whitespace kept, entities decoded, first h1 as title", async () => {
        const file = path.join(temp.dir, "misc.htm");
        await writeFile(file, "<h1>Caf&eacute;</h1><div hidden>secret</div><p aria-hidden=\"true\">also secret</p><pre>a  b\n  c</pre><p>x &lt; y</p>");
        const doc = await parsed(file);
        assert.equal(doc.title, "Café");
        assert.ok(!doc.text.includes("secret"));
        assert.ok(doc.text.includes("a  b\n  c"));
        assert.ok(doc.text.includes("x < y"));
    });

    it("text and code: one untitled section over the whole file", async () => {
        const text = await parsed(docs.text);
        assert.equal(text.type, "text");
        assert.equal(text.title, null);
        assert.deepEqual(text.sections, [{headingPath: [], page: null, start: 0, end: text.text.length}]);
        const code = await parsed(docs.code);
        assert.equal(code.type, "code");
        assert.ok(code.text.includes("class Server(http.server.HTTPServer):"));
    });

    it("an extensionless file that sniffs as UTF-8 is text", async () => {
        const doc = await parsed(docs.extensionless);
        assert.equal(doc.type, "text");
        assert.ok(doc.text.startsWith("Weft indexes a folder"));
    });

    it("pdf: one section per page with the right 1-based page number, bookmarks as heading paths", async () => {
        const doc = await parsed(docs.pdf);
        assert.equal(doc.type, "pdf");
        assert.equal(doc.title, "Quarterly Report");
        markers.pdfPages.forEach((marker, index) => assert.equal(sectionAt(doc, marker).page, index + 1));
        assert.deepEqual([...new Set(doc.sections.map((section) => section.page))], [1, 2, 3]);
        assert.deepEqual(sectionAt(doc, markers.pdfPages[0]).headingPath, ["Introduction"]);
        assert.deepEqual(sectionAt(doc, "We describe the methods").headingPath, ["Methods"]);
        // "Data" starts mid-page: found in the page text, so the page splits there.
        assert.deepEqual(sectionAt(doc, markers.pdfPages[1]).headingPath, ["Methods", "Data"]);
        assert.deepEqual(sectionAt(doc, markers.pdfPages[2]).headingPath, ["Results"]);
        // A large vertical gap becomes a blank line, which the chunker treats as a paragraph break.
        assert.ok(doc.text.includes("ALPHA-PAGE-ONE.\n\nA second paragraph"));
    });

    it("pdf: a blank page still gets its own section", async () => {
        const doc = await parsed(docs.pdfWithBlankPage);
        assert.equal(doc.title, null);
        assert.deepEqual(doc.sections.map((section) => section.page), [1, 2, 3]);
        assert.equal(sectionAt(doc, "First page").page, 1);
        assert.equal(sectionAt(doc, "Third page").page, 3);
        const blank = doc.sections[1]!;
        assert.equal(doc.text.slice(blank.start, blank.end).trim(), "");
    });

    it("docx: Title style is the title, Heading 1/2 become the heading path", async () => {
        const doc = await parsed(docs.docx);
        assert.equal(doc.type, "docx");
        assert.equal(doc.title, "Weft Handbook");
        assert.deepEqual(sectionAt(doc, "pick a folder").headingPath, ["Getting Started"]);
        assert.deepEqual(sectionAt(doc, "answer faster").headingPath, ["Getting Started", "Choosing a Model"]);
        assert.deepEqual(sectionAt(doc, "indexing stalls").headingPath, ["Troubleshooting"]);
    });

    it("decoding: UTF-16 with a BOM, a character cut at the 8 KB sniff boundary, bad bytes past it", async () => {
        const utf16 = path.join(temp.dir, "utf16.txt");
        await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("héllo wörld", "utf16le")]));
        assert.equal((await parsed(utf16)).text, "héllo wörld");

        const straddle = path.join(temp.dir, "straddle.txt");
        await writeFile(straddle, "a".repeat(8191) + "é and more");
        assert.ok((await parsed(straddle)).text.endsWith("é and more"));

        const lateBadByte = path.join(temp.dir, "late.txt");
        await writeFile(lateBadByte, Buffer.concat([Buffer.from("b".repeat(9000)), Buffer.from([0xc3, 0x28]), Buffer.from(" tail")]));
        assert.ok((await parsed(lateBadByte)).text.endsWith("\ufffd( tail"));

        const earlyBadByte = path.join(temp.dir, "early.txt");
        await writeFile(earlyBadByte, Buffer.from([0x61, 0xff, 0xfe, 0x62, 0x0a]));
        assert.deepEqual(await parseDocument(earlyBadByte), {kind: "skipped", reason: "binary file"});
    });
});

describe("parseDocument: bad input comes back as an outcome", () => {
    const cases: [string, (fixtures: DocFixtures) => string, ParseOutcome["kind"], RegExp][] = [
        ["unknown extension", (fixtures) => fixtures.unknownExtension, "skipped", /^unsupported type \.xyz$/],
        ["binary without extension", (fixtures) => fixtures.binary, "skipped", /^binary file$/],
        ["binary with a text extension", (fixtures) => fixtures.binaryTxt, "skipped", /^binary file$/],
        ["empty file", (fixtures) => fixtures.empty, "skipped", /^empty file$/],
        ["garbage PDF", (fixtures) => fixtures.corruptPdf, "error", /^corrupt PDF: /],
        ["truncated PDF", (fixtures) => fixtures.truncatedPdf, "error", /^corrupt PDF: /],
        ["password-protected PDF", (fixtures) => fixtures.encryptedPdf, "error", /^encrypted PDF \(password required\)$/],
        ["PDF without a text layer", (fixtures) => fixtures.pdfNoText, "skipped", /^no extractable text/],
        ["corrupt DOCX", (fixtures) => fixtures.corruptDocx, "error", /^corrupt DOCX: /]
    ];
    for (const [name, pick, kind, reason] of cases) {
        it(name, async () => {
            const outcome = await parseDocument(pick(docs));
            assert.equal(outcome.kind, kind, JSON.stringify(outcome));
            assert.match((outcome as {reason: string}).reason, reason);
        });
    }

    it("a file that vanished", async () => {
        assert.deepEqual(await parseDocument(path.join(temp.dir, "gone.md")),
            {kind: "error", reason: "file disappeared while reading"});
    });

    it("a sparse 2 GiB file is refused from its size alone", async () => {
        const huge = path.join(temp.dir, "huge.txt");
        await writeFile(huge, "");
        await truncate(huge, 2 * 1024 ** 3);
        const started = performance.now();
        // All zero bytes: had it been read, it would have come back "binary file" (after allocating 2 GiB).
        assert.deepEqual(await parseDocument(huge), {kind: "skipped", reason: "too large (2.0 GiB > 64 MiB limit)"});
        assert.ok(performance.now() - started < 1000);
        assert.ok((await stat(huge)).blocks < 16, "the fixture must stay sparse");
    });

    it("maxBytes lowers the limit", async () => {
        assert.deepEqual(await parseDocument(docs.text, {maxBytes: 10}), {kind: "skipped", reason: "too large (100 bytes > 10 bytes limit)"});
    });

    it("directories and FIFOs are not read (opening a FIFO would block)", async () => {
        const folder = path.join(temp.dir, "folder.md");
        await mkdir(folder);
        assert.deepEqual(await parseDocument(folder), {kind: "skipped", reason: "not a regular file"});
        const fifo = path.join(temp.dir, "pipe.txt");
        if (spawnSync("mkfifo", [fifo]).status === 0)
            assert.deepEqual(await parseDocument(fifo), {kind: "skipped", reason: "not a regular file"});
    });

    it("an unreadable file is 'permission denied'", async () => {
        const locked = path.join(temp.dir, "locked", "secret.txt");
        await mkdir(path.dirname(locked));
        await writeFile(locked, "top secret");
        await chmod(locked, 0o000);
        if (process.getuid?.() !== 0) {
            assert.deepEqual(await parseDocument(locked), {kind: "error", reason: "permission denied"});
            return;
        }
        // Root reads anything, so the check runs in a child dropped to "nobody".
        await chmod(temp.dir, 0o755);
        await chmod(path.dirname(locked), 0o755);
        const child = spawnSync(process.execPath, [
            "--import", "tsx", "--input-type=module", "-e",
            `const {parseDocument} = await import(${JSON.stringify(parseModule)});` +
            `console.log(JSON.stringify(await parseDocument(${JSON.stringify(locked)})));`
        ], {uid: 65534, gid: 65534, encoding: "utf8", env: {...process.env, HOME: temp.dir}});
        assert.equal(child.status, 0, child.stderr);
        assert.deepEqual(JSON.parse(child.stdout.trim()), {kind: "error", reason: "permission denied"});
    });

    it("file-system errors map to user-facing reasons", () => {
        const withCode = (code: string): Error => Object.assign(new Error(code), {code});
        assert.equal(fileErrorReason(withCode("ENOENT")), "file disappeared while reading");
        assert.equal(fileErrorReason(withCode("EACCES")), "permission denied");
        assert.equal(fileErrorReason(withCode("EPERM")), "permission denied");
        assert.equal(fileErrorReason(new Error("other")), null);
        assert.equal(formatBytes(2 * 1024 ** 3), "2.0 GiB");
        assert.equal(formatBytes(64 * 1024 ** 2), "64 MiB");
        assert.equal(formatBytes(1536), "1.5 KiB");
    });

    it("an abort signal or a timeout ends a PDF parse with an error", async () => {
        const controller = new AbortController();
        controller.abort();
        assert.deepEqual(await parseDocument(docs.pdf, {signal: controller.signal}), {kind: "error", reason: "aborted"});
        assert.deepEqual(await parseDocument(docs.pdf, {timeoutMs: 1}), {kind: "error", reason: "timed out after 1 ms"});
        // The shared pdfjs state is still usable afterwards.
        await parsed(docs.pdf);
    });

    it("a PDF with a huge text stream is stopped by the timeout without starving the event loop", async () => {
        // 400k tiny text operators: several seconds of pdfjs work, all on microtasks if left alone.
        const doc = await PDFDocument.create();
        const page = doc.addPage();
        const ops = doc.context.flateStream(Buffer.from("BT /F1 12 Tf (x) Tj ET\n".repeat(400_000)));
        page.node.set(PDFName.of("Contents"), doc.context.register(ops));
        const file = path.join(temp.dir, "heavy.pdf");
        await writeFile(file, await doc.save());
        let ticks = 0;
        const ticker = setInterval(() => ticks++, 20);
        const started = performance.now();
        const outcome = await parseDocument(file, {timeoutMs: 300});
        const elapsed = performance.now() - started;
        clearInterval(ticker);
        assert.deepEqual(outcome, {kind: "error", reason: "timed out after 300 ms"});
        assert.ok(elapsed < 3000, `took ${elapsed.toFixed(0)} ms`);
        assert.ok(ticks >= 3, `timers ran only ${ticks} times in ${elapsed.toFixed(0)} ms`);
    });

    it("random bytes with every supported extension never throw", async () => {
        let seed = 7;
        const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
        for (const extension of ["pdf", "docx", "md", "html", "txt", "ts"]) {
            for (let round = 0; round < 5; round++) {
                const bytes = Buffer.from(Array.from({length: 200 + Math.floor(random() * 2000)}, () => Math.floor(random() * 256)));
                if (extension === "pdf")
                    bytes.write("%PDF-1.4\n", 0);
                const file = path.join(temp.dir, `fuzz-${round}.${extension}`);
                await writeFile(file, bytes);
                const outcome = await parseDocument(file);
                assert.ok(outcome.kind === "skipped" || outcome.kind === "error" || outcome.kind === "parsed");
            }
        }
    });
});
