// The fused CacheBlend decode (Weft patch 0003, llama_weft_blend_decode) on a node-llama-cpp context.
#pragma once

#include <napi.h>

/** fusedBlendDecode(LlamaContext._ctx, seqId, spec): Promise<{selected: Int32Array, deviation: Float32Array | null, decodeMs}> */
Napi::Value FusedBlendDecode(const Napi::CallbackInfo& info);

/** fusedBlendSupported(): whether the loaded llama.cpp has Weft's patch 0003. */
Napi::Value FusedBlendSupported(const Napi::CallbackInfo& info);
