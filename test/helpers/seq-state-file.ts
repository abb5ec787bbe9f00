// llama.cpp's sequence state *file* form (llama_state_seq_save_file, node-llama-cpp's sequence.saveStateToFile):
// u32 0x67677371 ("ggsq"), u32 version 3, u32 n_tok, i32 tokens[n_tok], then the same body as the in-memory form
// (main/engine/kv/kv-blob.ts). The engine never reads or writes files of this form; the tests use it to check the
// in-memory form against llama.cpp's own loader.
import {type KvBody, KvBlobError, kvBodySize, parseKvBody, parseSeqStateMemory, type SeqStateMemory, seqStateMemoryMagic,
    serializeSeqStateMemory, writeKvBody} from "../../main/engine/kv/kv-blob.js";

export const seqStateFileMagic = 0x67677371;
export const seqStateFileVersion = 3;

export type SeqStateFile = {form: "file", tokens: Int32Array, body: KvBody};
export type SeqState = SeqStateFile | SeqStateMemory;

/** Parses the file form. */
export function parseSeqStateFile(bytes: Uint8Array): SeqStateFile {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 12)
        throw new KvBlobError(`sequence state is truncated: ${bytes.byteLength} bytes`);
    const magic = view.getUint32(0, true);
    if (magic !== seqStateFileMagic)
        throw new KvBlobError(`not a sequence state file: magic 0x${magic.toString(16).padStart(8, "0")}, expected 0x${seqStateFileMagic.toString(16)}`);
    const version = view.getUint32(4, true);
    if (version !== seqStateFileVersion)
        throw new KvBlobError(`unsupported sequence state file version ${version} (expected ${seqStateFileVersion})`);
    const nTok = view.getUint32(8, true);
    if (nTok * 4 > bytes.byteLength - 12)
        throw new KvBlobError(`sequence state is truncated: ${nTok} tokens cannot fit in ${bytes.byteLength - 12} bytes`);
    const tokens = new Int32Array(nTok);
    for (let i = 0; i < nTok; i++)
        tokens[i] = view.getInt32(12 + i * 4, true);
    return {form: "file", tokens, body: parseKvBody(bytes.subarray(12 + nTok * 4))};
}

/** Parses either form, told apart by the magic. */
export function parseSeqState(bytes: Uint8Array): SeqState {
    if (bytes.byteLength >= 4) {
        const magic = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
        if (magic === seqStateFileMagic)
            return parseSeqStateFile(bytes);
        if (magic === seqStateMemoryMagic)
            return parseSeqStateMemory(bytes);
    }
    throw new KvBlobError("not a llama.cpp sequence state (unknown magic)");
}

/** The file form, loadable by `sequence.loadStateFromFile(path, {acceptRisk: true})`. */
export function serializeSeqStateFile(tokens: ArrayLike<number>, body: KvBody): Uint8Array {
    const out = new Uint8Array(12 + 4 * tokens.length + kvBodySize(body));
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    view.setUint32(0, seqStateFileMagic, true);
    view.setUint32(4, seqStateFileVersion, true);
    view.setUint32(8, tokens.length, true);
    for (let i = 0; i < tokens.length; i++)
        view.setInt32(12 + 4 * i, tokens[i]!, true);
    writeKvBody(body, out, 12 + 4 * tokens.length);
    return out;
}

export function serializeSeqState(state: SeqState): Uint8Array {
    return state.form === "file" ? serializeSeqStateFile(state.tokens, state.body) : serializeSeqStateMemory(state.seqId, state.body);
}
