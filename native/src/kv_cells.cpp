#include "kv_cells.h"

#include <mutex>
#include <stdexcept>
#include <string>

namespace kv_cells {

namespace {

// Patch 0002's functions, declared here because an unpatched llama.h (the default install) does not have them.
using SeqKvTensorsFn = bool (*)(llama_memory_t, llama_seq_id, int32_t, ggml_tensor**, ggml_tensor**, size_t*, size_t*, bool*);
using SeqPlaceCellsFn = int32_t (*)(llama_memory_t, llama_seq_id, const llama_pos*, const llama_pos*, int32_t, uint32_t*);

struct PatchFunctions {
    SeqKvTensorsFn kvTensors = nullptr;
    SeqPlaceCellsFn placeCells = nullptr;
};

const PatchFunctions& patchFunctions() {
    static std::mutex mutex;
    static PatchFunctions found;
    std::lock_guard<std::mutex> lock(mutex);
    if (found.kvTensors == nullptr || found.placeCells == nullptr) {
        found.kvTensors = reinterpret_cast<SeqKvTensorsFn>(findOptionalLlamaFunction("llama_memory_seq_kv_tensors"));
        found.placeCells = reinterpret_cast<SeqPlaceCellsFn>(findOptionalLlamaFunction("llama_memory_seq_place_cells"));
    }
    return found;
}

} // namespace

bool placementSupported() {
    const PatchFunctions& patch = patchFunctions();
    return patch.kvTensors != nullptr && patch.placeCells != nullptr;
}

std::vector<CacheLayer> cacheLayers(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId) {
    const PatchFunctions& patch = patchFunctions();
    if (patch.kvTensors == nullptr || patch.placeCells == nullptr)
        throw std::runtime_error("this llama.cpp build lacks Weft's patch 0002 (llama_memory_seq_place_cells): rebuild with `npm run build:llama`");
    llama_memory_t memory = functions.llama_get_memory(ctx);
    const int32_t layerCount = functions.llama_model_n_layer(functions.llama_get_model(ctx));
    std::vector<CacheLayer> layers;
    for (int32_t il = 0; il < layerCount; il++) {
        CacheLayer layer;
        if (!patch.kvTensors(memory, seqId, il, &layer.k, &layer.v, &layer.kOffset, &layer.vOffset, &layer.vTrans) || layer.v == nullptr)
            throw std::runtime_error("layer " + std::to_string(il) + " has no plain K/V cache tensors (not a plain KV cache?)");
        layers.push_back(layer);
    }
    return layers;
}

int64_t placeCells(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId, const std::vector<llama_pos>& positions,
        const std::vector<llama_pos>& shifts) {
    const PatchFunctions& patch = patchFunctions();
    if (patch.placeCells == nullptr)
        throw std::runtime_error("this llama.cpp build lacks Weft's patch 0002 (llama_memory_seq_place_cells): rebuild with `npm run build:llama`");
    if (positions.size() != shifts.size() || positions.empty() || positions.size() > (size_t) INT32_MAX)
        throw std::runtime_error("internal error: cells to place need one shift per position");
    uint32_t first = 0;
    const int32_t placed = patch.placeCells(functions.llama_get_memory(ctx), seqId, positions.data(), shifts.data(),
        (int32_t) positions.size(), &first);
    if (placed == -1)
        return -1;
    if (placed != 0)
        throw std::runtime_error("the context's memory cannot place cells (not a plain KV cache)");
    return first;
}

} // namespace kv_cells
