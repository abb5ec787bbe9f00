// Resident chunk KVs: a chunk's K/V rows kept in buffers of the KV cache's own buffer type (GPU memory on a GPU
// build), and placed into a sequence with device-to-device copies through Weft's llama.cpp patch 0002
// (llama_memory_seq_place_cells / llama_memory_seq_kv_tensors). llama.cpp's own K-shift re-rotates the placed K at
// the next decode, on the device that holds the cache.
#pragma once

#include <stdexcept>
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llama_functions.h"

#include <memory>

struct ResidentRows;

struct ResidentPlacement {
    std::shared_ptr<const ResidentRows> kv;  // held until the placement's copies are done; null: a placeholder (cells only)
    const int32_t* positions = nullptr;  // final positions, kv's cell count of them
    uint32_t cellCount = 0;
    int32_t delta = 0;                   // K was cached at positions[i] - delta
};

/** Whether the loaded llama.cpp build has patch 0002's functions. */
bool residentKvSupported();

/** The rows behind a handle made by residentKvUpload (throws a Napi::TypeError otherwise, or if released). */
std::shared_ptr<const ResidentRows> residentOfHandle(const Napi::Value& value, const std::string& where, llama_context* ctx);

/** Cells in `rows`. */
uint32_t residentCellCount(const ResidentRows& rows);

/**
 * Places every part's cells in `seqId` (one contiguous run of free cells after what the sequence already holds,
 * marked shifted by each part's delta) and copies their K/V rows from the resident buffers (kv_copy_graph.h: one ggml
 * graph of strided copies per device). Returns the bytes copied, the copies queued and where the time went.
 * Throws std::runtime_error; the caller then clears the sequence.
 */
struct ResidentPlacementResult {
    uint64_t bytes = 0;
    uint64_t copies = 0;  // copy operations queued (one per part where the layers' rows step evenly)
    double placeMs = 0;  // finding and marking the cells
    double queueMs = 0;  // queueing the copies
    double syncMs = 0;   // waiting for them
};
ResidentPlacementResult placeResidentParts(const LlamaFunctions& functions, llama_context* ctx, llama_seq_id seqId,
    const std::vector<ResidentPlacement>& parts);

Napi::Value ResidentKvUpload(const Napi::CallbackInfo& info);     // (ctx, seqId, spec) -> Promise<handle>
Napi::Value ResidentKvRelease(const Napi::CallbackInfo& info);    // (handle) -> bytes freed (0 if already released)
Napi::Value ResidentKvSupported(const Napi::CallbackInfo& info);  // () -> boolean
