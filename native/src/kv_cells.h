// The context's KV cache tensors and direct cell placement, through Weft's llama.cpp patch 0002
// (llama_memory_seq_kv_tensors / llama_memory_seq_place_cells): cells are taken for a sequence and their rows written
// straight into the cache, without a state blob. The resident tier copies rows in on the device (kv_resident.cpp);
// the splice writes host parts in place when the cache lives in host memory (kv_splice.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "llama_functions.h"

namespace kv_cells {

struct CacheLayer {
    ggml_tensor* k = nullptr;
    ggml_tensor* v = nullptr;
    size_t kOffset = 0;  // byte offset of the sequence's stream in k
    size_t vOffset = 0;
    bool vTrans = false;  // V transposed (flash attention off)
};

/** Whether the loaded llama.cpp build has patch 0002's functions. */
bool placementSupported();

/**
 * Every layer's cache tensors for seqId's stream. Throws std::runtime_error when the build lacks patch 0002 or the
 * context's memory is not a plain KV cache.
 */
std::vector<CacheLayer> cacheLayers(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId);

/**
 * Takes one contiguous run of free cells of seqId's stream for `positions` (K of cell i was computed at
 * positions[i] - shifts[i]; llama.cpp's K-shift re-rotates it at the next decode) and returns the first cell's index,
 * or -1 when there is no such run. Throws std::runtime_error when the memory cannot place cells.
 */
int64_t placeCells(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId, const std::vector<llama_pos>& positions,
    const std::vector<llama_pos>& shifts);

} // namespace kv_cells
