import {Field, FixedSizeList, Float32, Schema, Utf8} from "apache-arrow";
import * as lancedb from "@lancedb/lancedb";
import type {Embedder} from "./embedder.js";
import {sqlIn, sqlString} from "./sql.js";

export type VectorHit = {id: string, path: string, docHash: string, distance: number};
export type HybridHit = {id: string, path: string, docHash: string, score: number};

const annThreshold = 20_000;

/**
 * One table of chunk vectors per embedding model. Rows carry the chunk's path and content hash, so a
 * search trusts them exactly as far as the chunk rows (see LibraryStore), and `sync` brings the table to
 * the current chunks: new chunks are embedded, vanished ones dropped — which is also what re-embeds
 * everything when the embedding model changes.
 */
export class VectorIndex {
    private annBuilt = false;
    private ftsBuilt = false;
    private reranker: Promise<lancedb.rerankers.RRFReranker> | null = null;

    private constructor(public readonly table: lancedb.Table) {}

    public static async open(db: lancedb.Connection, embedder: Embedder): Promise<VectorIndex> {
        // v2 keeps each chunk's text beside its vector, so one LanceDB hybrid query (full-text + vector, fused by its
        // RRFReranker) answers a question. A v1 table (no text) is dropped; the next ingest's sync re-embeds.
        const name = `vectors_${embedder.key}_v2`;
        const names = await db.tableNames();
        if (names.includes(`vectors_${embedder.key}`))
            await db.dropTable(`vectors_${embedder.key}`);

        const schema = new Schema([
            new Field("id", new Utf8(), false),
            new Field("path", new Utf8(), false),
            new Field("folderId", new Utf8(), false),
            new Field("docHash", new Utf8(), false),
            new Field("text", new Utf8(), false),
            new Field("vector", new FixedSizeList(embedder.dimensions, new Field("item", new Float32(), true)), false)
        ]);
        const table = names.includes(name) ? await db.openTable(name) : await db.createEmptyTable(name, schema, {existOk: true});
        const index = new VectorIndex(table);
        const indices = await table.listIndices();
        index.annBuilt = indices.some((entry) => entry.columns.includes("vector"));
        index.ftsBuilt = indices.some((entry) => entry.columns.includes("text"));
        return index;
    }

    /** Whether hybrid search can run here (the table has rows and its full-text index). */
    public get hybridReady(): boolean {
        return this.ftsBuilt;
    }

    public async sync(
        chunks: lancedb.Table,
        folderId: string,
        embedder: Embedder,
        onProgress?: (done: number, total: number) => void
    ): Promise<{embedded: number, dropped: number}> {
        const where = `folderId = ${sqlString(folderId)}`;
        const chunkIds = new Set(((await chunks.query().where(where).select(["id"]).toArray()) as Array<{id: string}>).map((row) => row.id));
        const vectorIds = new Set(((await this.table.query().where(where).select(["id"]).toArray()) as Array<{id: string}>).map((row) => row.id));
        const stale = [...vectorIds].filter((id) => !chunkIds.has(id));
        const missing = [...chunkIds].filter((id) => !vectorIds.has(id));

        for (let start = 0; start < stale.length; start += 500)
            await this.table.delete(sqlIn("id", stale.slice(start, start + 500)));

        for (let start = 0; start < missing.length; start += 256) {
            const rows = (await chunks.query().where(sqlIn("id", missing.slice(start, start + 256)))
                .select(["id", "path", "folderId", "docHash", "text"]).toArray()) as Array<{id: string, path: string, folderId: string, docHash: string, text: string}>;
            const vectors = await embedder.embed(rows.map((row) => row.text));
            await this.table.add(rows.map((row, index) => ({
                id: row.id, path: row.path, folderId: row.folderId, docHash: row.docHash, text: row.text, vector: Array.from(vectors[index]!)
            })));
            onProgress?.(Math.min(start + 256, missing.length), missing.length);
        }

        if (!this.annBuilt && (await this.table.countRows()) >= annThreshold) {
            // Exact search is fine for small libraries; past this size an IVF-PQ index keeps queries fast.
            // Built for the metric `search` asks for: lance ignores an index of another metric and scans every vector.
            await this.table.createIndex("vector", {config: lancedb.Index.ivfPq({distanceType: "cosine"}), replace: true});
            this.annBuilt = true;
        }

        if (!this.ftsBuilt && (await this.table.countRows()) > 0) {
            // Rows added later are searched unindexed until the upkeep's optimize folds them in.
            await this.table.createIndex("text", {config: lancedb.Index.fts({withPosition: false}), replace: true});
            this.ftsBuilt = true;
        }

        return {embedded: missing.length, dropped: stale.length};
    }

    /** One LanceDB hybrid query: full-text and vector results fused by reciprocal rank (RRFReranker, k = 60). */
    public async hybrid(text: string, vector: Float32Array, limit: number): Promise<HybridHit[]> {
        this.reranker ??= lancedb.rerankers.RRFReranker.create(60);
        const rows = (await this.table.query().fullTextSearch(text).nearestTo(Array.from(vector)).distanceType("cosine")
            .rerank(await this.reranker).select(["id", "path", "docHash"]).limit(limit).toArray()) as
            Array<{id: string, path: string, docHash: string, _relevance_score: number}>;
        return rows.map((row) => ({id: row.id, path: row.path, docHash: row.docHash, score: row._relevance_score}));
    }

    public async dropFolder(folderId: string): Promise<void> {
        await this.table.delete(`folderId = ${sqlString(folderId)}`);
    }

    public async search(vector: Float32Array, limit: number): Promise<VectorHit[]> {
        const rows = (await this.table.vectorSearch(Array.from(vector)).distanceType("cosine").limit(limit)
            .select(["id", "path", "docHash", "_distance"]).toArray()) as Array<{id: string, path: string, docHash: string, _distance: number}>;
        return rows.map((row) => ({id: row.id, path: row.path, docHash: row.docHash, distance: row._distance}));
    }
}
