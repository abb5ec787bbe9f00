import type {LlamaContextSequence, Token} from "node-llama-cpp";
import {getContextSequenceState, sequenceIdOf} from "../../main/engine/native/native-addon.js";

/** A sequence's state blob and the tokens it holds (node-llama-cpp's view of them). */
export async function saveSequenceState(sequence: LlamaContextSequence): Promise<{state: Buffer, tokens: Token[]}> {
    const tokens = sequence.contextTokens;
    const state = await getContextSequenceState(sequence.context, sequenceIdOf(sequence));
    return {state, tokens};
}
