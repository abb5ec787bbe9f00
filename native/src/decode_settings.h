// A context's settings for its ordinary decodes, from Weft's patches: where the causal mask is built (patch 0008,
// llama_weft_set_mask_mode) and whether a memory update reserves the worst-case graph (patch 0009,
// llama_weft_set_update_reserve).
#pragma once

#include <napi.h>

/**
 * setDecodeMaskMode(LlamaContext._ctx, "auto" | "host" | "graph"): boolean. False where the loaded llama.cpp lacks
 * patch 0008 (its decodes then always fill the mask on the host).
 */
Napi::Value SetDecodeMaskMode(const Napi::CallbackInfo& info);

/**
 * setUpdateReserve(LlamaContext._ctx, reserve: boolean): boolean | null, the previous setting, or null where the loaded
 * llama.cpp lacks patch 0009 (it then always reserves, as upstream does).
 */
Napi::Value SetUpdateReserve(const Napi::CallbackInfo& info);
