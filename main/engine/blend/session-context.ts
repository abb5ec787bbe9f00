// What a blend session learns of the chat context it serves before it opens: the KV layout of its cache, and the
// resident tier's default budget on this device.
import type {Llama, LlamaContextSequence, LlamaModel} from "node-llama-cpp";
import {parseSeqStateMemory} from "../kv/kv-blob.js";
import {getContextSequenceState, sequenceIdOf} from "../native/native-addon.js";

/** Default byte budget of the resident tier on a GPU: a quarter of the free VRAM at open, at most 4 GiB. */
export async function defaultResidentBudgetBytes(llama: Llama): Promise<number> {
    if (llama.gpu === false)
        return 0;
    const {free} = await llama.getVramState();
    return Math.min(4 * 1024 ** 3, Math.floor(free / 4));
}

/**
 * The chat context's KV layout, read from a one-token state: node-llama-cpp reports its flash-attention default as
 * "auto", which llama.cpp resolves per backend, and V is stored transposed exactly when it is off (the cache
 * fingerprint and the contexts chunk KVs are computed in must match it); the stream count is what a state loaded
 * into this context must declare.
 */
export async function chatKvLayout(sequence: LlamaContextSequence, model: LlamaModel): Promise<{flashAttention: boolean, nStream: number}> {
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens([model.tokens.bos ?? model.tokenize("a")[0]!]);
    const body = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
    await sequence.clearHistory();
    return {flashAttention: !body.vTrans, nStream: body.nStream};
}
