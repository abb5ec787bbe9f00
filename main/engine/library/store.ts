import {createHash} from "node:crypto";
import {mkdir} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as lancedb from "@lancedb/lancedb";
import {Field, Int32, Int64, Schema, Utf8} from "apache-arrow";
import {retryCommit} from "./commit-retry.js";
import {sqlIn, sqlString} from "./sql.js";
import type {Chunk, DocumentType} from "./types.js";
import type {Embedder} from "./embedder.js";
import {VectorIndex} from "./vectors.js";

export type DocumentStatus = "indexed" | "skipped" | "error";

export type DocumentRow = {
    path: string;
    folderId: string;
    contentHash: string;
    size: number;
    mtimeMs: number;
    type: string;
    status: DocumentStatus;
    reason: string;
    chunkCount: number;
    updatedAt: string;
};

export type FolderRow = {id: string, path: string, addedAt: string, lastIndexedAt: string};

export type ChunkRow = {
    id: string;
    path: string;
    folderId: string;
    docHash: string;
    chunkIndex: number;
    text: string;
    page: number | null;
    headingPath: string;
    spanStart: number;
    spanEnd: number;
    contentHash: string;
    tokenCount: number;
};

export type ChunkHit = ChunkRow & {score: number};

/** A document whose new chunks are ready to replace its old ones. */
export type PendingDocument = {
    row: DocumentRow;
    type: DocumentType | null;
    chunks: Chunk[];
};

const folderSchema = new Schema([
    new Field("id", new Utf8(), false),
    new Field("path", new Utf8(), false),
    new Field("addedAt", new Utf8(), false),
    new Field("lastIndexedAt", new Utf8(), false)
]);

const documentSchema = new Schema([
    new Field("path", new Utf8(), false),
    new Field("folderId", new Utf8(), false),
    new Field("contentHash", new Utf8(), false),
    // Bytes, exact: a Float32 "size" (before) rounded files over 16 MiB, so they looked changed on every ingest.
    new Field("sizeBytes", new Int64(), false),
    new Field("mtimeMs", new Utf8(), false),
    new Field("type", new Utf8(), false),
    new Field("status", new Utf8(), false),
    new Field("reason", new Utf8(), false),
    new Field("chunkCount", new Int32(), false),
    new Field("updatedAt", new Utf8(), false)
]);

const chunkSchema = new Schema([
    new Field("id", new Utf8(), false),
    new Field("path", new Utf8(), false),
    new Field("folderId", new Utf8(), false),
    new Field("docHash", new Utf8(), false),
    new Field("chunkIndex", new Int32(), false),
    new Field("text", new Utf8(), false),
    new Field("page", new Int32(), true),
    new Field("headingPath", new Utf8(), false),
    new Field("spanStart", new Int32(), false),
    new Field("spanEnd", new Int32(), false),
    new Field("contentHash", new Utf8(), false),
    new Field("tokenCount", new Int32(), false)
]);

// lance gives its compute pool cores - 2 threads (at least 1), and with one thread its full-text index build
// deadlocks (lancedb#3568; it hung for good at 100,000 chunks on 2 cores). Read when the pool first starts.
if (process.env.LANCE_CPU_THREADS === undefined && os.availableParallelism() <= 3)
    process.env.LANCE_CPU_THREADS = "2";

export function folderIdFor(folderPath: string): string {
    return createHash("sha256").update(folderPath).digest("hex").slice(0, 16);
}

function chunkId(filePath: string, docHash: string, index: number): string {
    return createHash("sha256").update(`${filePath}\0${docHash}\0${index}`).digest("hex").slice(0, 32);
}

/**
 * The document library in LanceDB (embedded, in the data dir): folders, documents and chunks, with a
 * full-text index on chunk text.
 *
 * A document's chunks are replaced in three steps: the new chunks are added (tagged with the new content
 * hash), the document row is switched to that hash (the commit point), then the old chunks are deleted.
 * Readers only trust chunks whose hash matches the committed document row, so a question asked mid-ingest
 * sees the last committed state, and a crash between the steps leaves nothing that `open()` cannot tidy.
 */
export class LibraryStore {
    private ftsIndexed = false;
    private readonly vectorIndexes = new Map<string, Promise<VectorIndex>>();

    private constructor(
        private readonly db: lancedb.Connection,
        private readonly folders: lancedb.Table,
        private readonly documents: lancedb.Table,
        private readonly chunks: lancedb.Table
    ) {}

    public static async open(dataDir: string): Promise<LibraryStore> {
        const dir = path.join(dataDir, "library");
        await mkdir(dir, {recursive: true});
        // Another process (the CLI beside serve or the app) may commit: every read and write starts from the latest version.
        const db = await lancedb.connect(dir, {readConsistencyInterval: 0});
        const names = new Set(await db.tableNames());
        const table = async (name: string, schema: Schema) =>
            names.has(name) ? db.openTable(name) : db.createEmptyTable(name, schema, {existOk: true});
        const store = new LibraryStore(db, await table("folders", folderSchema), await table("documents", documentSchema),
            await table("chunks", chunkSchema));
        store.ftsIndexed = (await store.chunks.listIndices()).some((index) => index.columns.includes("text"));
        await migrateSizeColumn(store.documents);
        return store;
    }

    public close(): void {
        this.db.close();
    }

    public async listFolders(): Promise<FolderRow[]> {
        return (await this.folders.query().toArray()) as FolderRow[];
    }

    public async addFolder(folderPath: string): Promise<FolderRow> {
        const id = folderIdFor(folderPath);
        const existing = (await this.folders.query().where(`id = ${sqlString(id)}`).toArray())[0] as FolderRow | undefined;
        if (existing != null)
            return existing;

        const row: FolderRow = {id, path: folderPath, addedAt: new Date().toISOString(), lastIndexedAt: ""};
        await retryCommit(() => this.folders.add([row]));
        return row;
    }

    public async markFolderIndexed(id: string): Promise<void> {
        await retryCommit(() => this.folders.update({where: `id = ${sqlString(id)}`, values: {lastIndexedAt: new Date().toISOString()}}));
    }

    public async removeFolder(id: string): Promise<boolean> {
        const where = `folderId = ${sqlString(id)}`;
        const existed = (await this.folders.countRows(`id = ${sqlString(id)}`)) > 0;
        for (const index of this.vectorIndexes.values())
            await (await index).dropFolder(id);

        await retryCommit(() => this.chunks.delete(where));
        await retryCommit(() => this.documents.delete(where));
        await retryCommit(() => this.folders.delete(`id = ${sqlString(id)}`));
        return existed;
    }

    public async documentsOf(folderId: string): Promise<Map<string, DocumentRow>> {
        const rows = (await this.documents.query().where(`folderId = ${sqlString(folderId)}`).toArray()) as DocumentRow[];
        return new Map(rows.map((row) => [row.path, fromStoredDocument(row as unknown as Record<string, unknown>)]));
    }

    /** Chunk texts (committed ones only), in batches, for cache warming. */
    public async* chunkTexts(folderId: string | null, batchSize = 256): AsyncGenerator<Array<{id: string, path: string, text: string}>> {
        const where = folderId != null ? `folderId = ${sqlString(folderId)}` : undefined;
        const query = this.chunks.query().select(["id", "path", "docHash", "text"]);
        const rows = (await (where != null ? query.where(where) : query).toArray()) as ChunkRow[];
        const committed = await this.onlyCommitted(rows.map((row) => ({...row, score: 0})));
        for (let start = 0; start < committed.length; start += batchSize)
            yield committed.slice(start, start + batchSize).map((row) => ({id: row.id, path: row.path, text: row.text}));
    }

    public async countChunks(folderId?: string): Promise<number> {
        return this.chunks.countRows(folderId != null ? `folderId = ${sqlString(folderId)}` : undefined);
    }

    /**
     * Paths of the folder whose chunks or document rows are stored more than once (two writers at once before the
     * data-folder lock). Their duplicate document rows are reduced to one here; the caller re-indexes the paths,
     * which replaces every chunk of their current hash with one fresh set.
     */
    public async pathsWithDuplicates(folderId: string): Promise<string[]> {
        const where = `folderId = ${sqlString(folderId)}`;
        const chunkRows = (await this.chunks.query().where(where).select(["id", "path"]).toArray()) as Array<{id: string, path: string}>;
        const seenIds = new Set<string>();
        const paths = new Set<string>();
        for (const row of chunkRows) {
            if (seenIds.has(row.id))
                paths.add(row.path);

            seenIds.add(row.id);
        }

        const documentRows = (await this.documents.query().where(where).toArray()) as Array<Record<string, unknown>>;
        const byPath = new Map<string, Record<string, unknown>[]>();
        for (const row of documentRows)
            byPath.set(row.path as string, [...(byPath.get(row.path as string) ?? []), row]);

        const doubled = [...byPath.entries()].filter(([, rows]) => rows.length > 1);
        if (doubled.length > 0) {
            const keep = doubled.map(([, rows]) => fromStoredDocument(rows.at(-1)!));
            await retryCommit(() => this.documents.delete(sqlIn("path", keep.map((row) => row.path))));
            await this.putDocumentRows(keep);
            for (const row of keep)
                paths.add(row.path);
        }
        return [...paths];
    }

    /** Records skipped or failed files without touching chunks already indexed for them. */
    public async putDocumentRows(rows: DocumentRow[]): Promise<void> {
        if (rows.length === 0)
            return;

        await retryCommit(() => this.documents.mergeInsert("path").whenMatchedUpdateAll().whenNotMatchedInsertAll()
            .execute(rows.map(toStoredDocument)));
    }

    /** Replaces the chunks of several documents in one batch (three steps; see the class comment). */
    public async commitDocuments(pending: PendingDocument[]): Promise<void> {
        if (pending.length === 0)
            return;

        // Chunks exist only for paths that have a document row (the ingest journal tidies a crashed commit before the
        // next one), so new paths skip both deletes: each scans the whole chunk table, making a first ingest quadratic.
        const known = new Set(((await this.documents.query().where(sqlIn("path", pending.map(({row}) => row.path))).select(["path"])
            .toArray()) as Array<{path: string}>).map((row) => row.path));
        const replacing = pending.filter(({row}) => known.has(row.path));
        if (replacing.length > 0) {
            const staleNew = replacing.map(({row}) => `(path = ${sqlString(row.path)} AND docHash = ${sqlString(row.contentHash)})`);
            await retryCommit(() => this.chunks.delete(staleNew.join(" OR ")));
        }

        const rows: ChunkRow[] = pending.flatMap(({row, chunks}) => chunks.map((chunk) => ({
            id: chunkId(row.path, row.contentHash, chunk.index),
            path: row.path,
            folderId: row.folderId,
            docHash: row.contentHash,
            chunkIndex: chunk.index,
            text: chunk.text,
            page: chunk.page,
            headingPath: JSON.stringify(chunk.headingPath),
            spanStart: chunk.span[0],
            spanEnd: chunk.span[1],
            contentHash: chunk.contentHash,
            tokenCount: chunk.tokenCount
        })));
        if (rows.length > 0)
            await retryCommit(() => this.chunks.add(rows));

        await this.putDocumentRows(pending.map(({row}) => row));

        if (replacing.length > 0) {
            const oldChunks = replacing.map(({row}) => `(path = ${sqlString(row.path)} AND docHash != ${sqlString(row.contentHash)})`);
            await retryCommit(() => this.chunks.delete(oldChunks.join(" OR ")));
        }
    }

    public async removeDocuments(paths: string[]): Promise<void> {
        for (let start = 0; start < paths.length; start += 200) {
            const batch = paths.slice(start, start + 200);
            await retryCommit(() => this.chunks.delete(sqlIn("path", batch)));
            await retryCommit(() => this.documents.delete(sqlIn("path", batch)));
        }
    }

    /**
     * Deletes chunks that no committed document row vouches for: left by a crash between the add and the
     * commit (new hash, uncommitted) or between the commit and the delete (old hash).
     */
    public async tidy(paths: string[]): Promise<void> {
        if (paths.length === 0)
            return;

        const rows = (await this.documents.query().where(sqlIn("path", paths)).select(["path", "contentHash", "status"]).toArray()) as
            Array<Pick<DocumentRow, "path" | "contentHash" | "status">>;
        const committed = new Map(rows.map((row) => [row.path, row.contentHash]));
        const predicates = paths.map((filePath) => {
            const hash = committed.get(filePath);
            return hash != null
                ? `(path = ${sqlString(filePath)} AND docHash != ${sqlString(hash)})`
                : `(path = ${sqlString(filePath)})`;
        });
        await retryCommit(() => this.chunks.delete(predicates.join(" OR ")));
    }

    /** Builds the full-text index once the table has rows; rows added later are still searched (unindexed scan). */
    public async ensureFtsIndex(optimize = false): Promise<void> {
        if (!this.ftsIndexed) {
            if ((await this.chunks.countRows()) === 0)
                return;

            await retryCommit(() => this.chunks.createIndex("text", {config: lancedb.Index.fts({withPosition: false}), replace: true}));
            // Hybrid search hydrates vector hits by id.
            await retryCommit(() => this.chunks.createIndex("id", {config: lancedb.Index.btree(), replace: true}));
            this.ftsIndexed = true;
        } else if (optimize)
            await retryCommit(() => this.chunks.optimize());
    }

    /**
     * Library upkeep after an ingest that changed something: every table's small fragments are compacted, its indexes
     * caught up, and table versions older than `graceMs` removed with their files (each commit leaves a version, so
     * without this the folder grows with every edit). The grace keeps the versions a reader in another process may
     * still be reading.
     */
    public async upkeep(graceMs: number): Promise<void> {
        const cleanupOlderThan = new Date(Date.now() - graceMs);
        const vectorTables = await Promise.all([...this.vectorIndexes.values()].map(async (index) => (await index).table));
        for (const table of [this.chunks, this.documents, this.folders, ...vectorTables])
            await retryCommit(() => table.optimize({cleanupOlderThan}));
    }

    public async searchText(query: string, limit: number): Promise<ChunkHit[]> {
        const cleaned = query.replace(/[^\p{L}\p{N}\s]+/gu, " ").trim();
        if (cleaned === "" || limit === 0)
            return [];

        await this.ensureFtsIndex();
        if (!this.ftsIndexed)
            return [];

        // Over-fetch: stale rows of a document being replaced are filtered out below.
        const rows = (await this.chunks.search(cleaned, "fts").limit(limit * 2 + 8).toArray()) as Array<ChunkRow & {_score: number}>;
        const hits = await this.onlyCommitted(rows.map((row) => ({...row, score: row._score})));
        return hits.slice(0, limit);
    }

    public vectorIndex(embedder: Embedder): Promise<VectorIndex> {
        let index = this.vectorIndexes.get(embedder.key);
        if (index == null) {
            index = VectorIndex.open(this.db, embedder);
            this.vectorIndexes.set(embedder.key, index);
        }
        return index;
    }

    /** Embeds the folder's chunks that have no vector yet for this model and drops vectors of vanished chunks. */
    public async syncVectors(folderId: string, embedder: Embedder, onProgress?: (done: number, total: number) => void) {
        return (await this.vectorIndex(embedder)).sync(this.chunks, folderId, embedder, onProgress);
    }

    /**
     * Full-text and vector results fused by reciprocal rank (k = 60): robust to the two scores' different scales, and a
     * chunk found by both rises to the top. One LanceDB hybrid query over the vector table (which keeps each chunk's
     * text), then the hits' chunk rows by id; a vector table without its text index yet falls back to full-text.
     */
    public async searchHybrid(query: string, queryVector: Float32Array, embedder: Embedder, limit: number): Promise<ChunkHit[]> {
        const cleaned = query.replace(/[^\p{L}\p{N}\s]+/gu, " ").trim();
        const index = await this.vectorIndex(embedder);
        if (cleaned === "" || limit === 0 || !index.hybridReady)
            return this.searchText(query, limit);

        // Over-fetch: stale rows of a document being replaced are filtered out below.
        const fused = await index.hybrid(cleaned, queryVector, limit * 2 + 8);
        if (fused.length === 0)
            return [];

        const rows = (await this.chunks.query().where(sqlIn("id", fused.map((hit) => hit.id))).toArray()) as ChunkRow[];
        const known = new Map((await this.onlyCommitted(rows.map((row) => ({...row, score: 0})))).map((row) => [row.id, row]));
        return fused.filter((hit) => known.has(hit.id)).slice(0, limit).map((hit) => ({...known.get(hit.id)!, score: hit.score}));
    }

    private async onlyCommitted(hits: ChunkHit[]): Promise<ChunkHit[]> {
        if (hits.length === 0)
            return hits;

        const paths = [...new Set(hits.map((hit) => hit.path))];
        const rows = (await this.documents.query().where(sqlIn("path", paths)).select(["path", "contentHash"]).toArray()) as
            Array<Pick<DocumentRow, "path" | "contentHash">>;
        const committed = new Map(rows.map((row) => [row.path, row.contentHash]));
        return hits.filter((hit) => committed.get(hit.path) === hit.docHash);
    }
}

function toStoredDocument(row: DocumentRow): Record<string, unknown> {
    const {size, ...rest} = row;
    return {...rest, sizeBytes: BigInt(size), mtimeMs: String(row.mtimeMs)};
}

function fromStoredDocument(stored: Record<string, unknown>): DocumentRow {
    const {sizeBytes, ...rest} = stored;
    return {...(rest as Omit<DocumentRow, "size">), size: Number(sizeBytes), mtimeMs: Number(stored.mtimeMs)};
}

/**
 * Libraries written before sizes were exact have a Float32 `size`; Lance cannot cast it in place, so an exact
 * column is added from it and the old one dropped (each step one commit; a crash between them redoes the second).
 */
async function migrateSizeColumn(documents: lancedb.Table): Promise<void> {
    const columns = new Set((await documents.schema()).fields.map((field) => field.name));
    if (!columns.has("size"))
        return;

    if (!columns.has("sizeBytes"))
        await documents.addColumns([{name: "sizeBytes", valueSql: "CAST(size AS BIGINT)"}]);

    await documents.dropColumns(["size"]);
}
