// Where a context's ordinary decodes build their causal mask (Weft patch 0008, llama_weft_set_mask_mode).
#pragma once

#include <napi.h>

/**
 * setDecodeMaskMode(LlamaContext._ctx, "auto" | "host" | "graph"): boolean. False where the loaded llama.cpp lacks
 * patch 0008 (its decodes then always fill the mask on the host).
 */
Napi::Value SetDecodeMaskMode(const Napi::CallbackInfo& info);
