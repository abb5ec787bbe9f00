// The splice's plan (spliceSequenceState's spec, read and checked on the main thread): the worker in kv_splice.cpp
// only touches the raw pointers it holds, which the spec's typed arrays keep alive for the call.
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

#include "kv_resident.h"
#include "llama_functions.h"
#include "rope.h"

namespace splice {

struct LayerShape {
    int32_t kType = 0;
    uint64_t kRowSize = 0;
    int32_t vType = 0;
    uint64_t vRowSize = 0;   // v rows (vTrans false)
    uint32_t vElemSize = 0;  // transposed V
    uint32_t nEmbdV = 0;     // transposed V
};

struct Part {
    const int32_t* positions = nullptr;  // final positions, cellCount of them
    uint32_t cellCount = 0;
    int32_t delta = 0;                   // rotation to apply to K
    std::vector<const uint8_t*> k;       // per layer, cellCount * kRowSize bytes
    std::vector<const uint8_t*> v;       // per layer: rows, or nEmbdV runs of cellCount elements
    // Or a KV codec container, decoded straight into the part's cells with K rotated to their positions (no K/V
    // arrays then): a chunk read from the disk tier skips its decoded copy and the splice's copy of it.
    const uint8_t* coded = nullptr;
    size_t codedBytes = 0;
};

// One layer's rows for every position of the prompt, computed exactly (hkvd's capture pass): they replace the
// cached rows of that layer for every cell whose position they cover.
struct LayerOverride {
    const float* k = nullptr;  // nTokens rows of nEmbdK, K after RoPE at the row's position
    const float* v = nullptr;  // nTokens rows of nEmbdV
    uint64_t nTokens = 0;
    uint32_t nEmbdK = 0;
    uint32_t nEmbdV = 0;
};

struct Plan {
    llama_seq_id seqId = 0;
    uint32_t nStream = 1;
    uint32_t stream = 0;
    bool vTrans = false;
    std::vector<LayerShape> layers;
    std::vector<Part> parts;
    RopeSpec rope;
    uint32_t threads = 1;
    bool pinned = true;
    uint64_t totalCells = 0;  // of the host parts
    std::vector<ResidentPlacement> resident;  // parts already in device buffers: placed after the host parts
    std::vector<const LayerOverride*> overrideOf;  // per layer, null when none
    std::vector<LayerOverride> overrides;
    const uint8_t* codedFingerprint = nullptr;  // 16 bytes: the model fingerprint coded parts must carry
    bool anyCoded = false;
};

/**
 * Reads and checks spliceSequenceState's (seqId, spec): every size against the layer shapes and the context, so the
 * worker never reads past a buffer; throws a Napi error naming the bad field.
 */
Plan readPlan(Napi::Env env, const LlamaFunctions& functions, llama_context* ctx, const Napi::Value& seqValue, const Napi::Object& spec);

} // namespace splice
