// captureLayerKV's graph side: layer-N K and V for a list of tokens, computed on a private llama_context (same llama_model as
// node-llama-cpp's, created here with cb_eval set, since cb_eval can only be set at creation) and cached per
// model + settings.
//
// What is captured: exactly the rows the graph writes into the KV cache of `layer`. The callback watches the
// GGML_OP_SET_ROWS nodes whose destination is the cache tensor `cache_k_l<layer>` / `cache_v_l<layer>`
// (llama-kv-cache.cpp: cpy_k / cpy_v) and copies their source (src[0]) before f16 conversion:
//   K: for llama-style models a view of the tensor named `Kcur-<layer>` that ggml_rope_ext produced, i.e. K after
//      RoPE at the given positions (models/llama.cpp names three tensors `Kcur-<layer>`: the wk matmul, its
//      3-D reshape and the RoPE output; the cache gets the last one). Models that normalize or rotate K after RoPE
//      store that instead, and so does this capture.
//   V: `Vcur-<layer>` (the wv projection, reshaped), token-major whatever the cache's V layout (transposed or not).
// The graph is stopped right after layer <layer>'s V write, so later layers, the output norm and the logits are
// never computed. Each piece of at most batchSize tokens is one llama_decode (one ubatch), so positions must be
// acceptable to llama_decode: consecutive within the call with stock llama.cpp.
#pragma once

#include <string>
#include <vector>

#include "ggml.h"

#include "llama_functions.h"
#include "pinned_buffer.h"

// The state of one capture call, read and written by the eval callback during llama_decode.
struct CaptureRun {
    int32_t layer = 0;
    // Reset before each llama_decode.
    bool inLayer = false;
    bool kSeen = false;
    bool vSeen = false;
    bool finished = false;
    // Gathered over the call.
    std::vector<float> k;
    std::vector<float> v;
    std::string kSource;
    std::string vSource;
    std::string error;
    const LlamaFunctions* functions = nullptr;
    // Where the time goes (reported with the result): decodes, and the part of them spent copying K/V out.
    double decodeMs = 0;
    double copyMs = 0;
    uint32_t decodes = 0;
    PinnedBuffer* staging = nullptr;  // the capture context's: K/V are read through it from a GPU
};

// ggml_backend_sched calls this with ask=true for each node ("do you want this one's data?"), computes up to the
// first wanted node, then calls again with ask=false; returning false there ends the current graph split.
// `userData` points at the slot holding the active CaptureRun (null between calls).
bool captureEvalCallback(ggml_tensor* tensor, bool ask, void* userData);
