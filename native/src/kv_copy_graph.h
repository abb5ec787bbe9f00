// Many byte-range copies inside one backend's memory (a resident chunk's rows into the KV cache's cells), queued with
// few host calls: consecutive ranges that step by the same source and destination pitch are merged into one strided
// copy (a chunk's K and V rows of every layer become one), and each backend's strided copies are queued as one ggml
// graph of GGML_OP_CPY nodes. ggml-cuda runs a same-type strided copy as one cudaMemcpy2DAsync, so the placement of 17
// chunks of a 32-layer model queues 17 copies instead of 1,088 (one per chunk, layer and K|V).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "llama_functions.h"

/** A 1-D byte view of `size` bytes at `data` inside `buffer`, for the backend's tensor set / copy functions. */
ggml_tensor byteView(ggml_backend_buffer_t buffer, void* data, size_t size);

/** `bytes` bytes from `from` (in `fromBuffer`) to `to` (in `toBuffer`); both buffers of the same backend device. */
struct ByteCopy {
    ggml_backend_buffer_t fromBuffer = nullptr;
    const uint8_t* from = nullptr;
    ggml_backend_buffer_t toBuffer = nullptr;
    uint8_t* to = nullptr;
    size_t bytes = 0;
};

/** `height` rows of `width` bytes, row r from `from + r * fromPitch` to `to + r * toPitch`. */
struct StridedCopy {
    ggml_backend_buffer_t fromBuffer = nullptr;
    const uint8_t* from = nullptr;
    size_t fromPitch = 0;
    ggml_backend_buffer_t toBuffer = nullptr;
    uint8_t* to = nullptr;
    size_t toPitch = 0;
    size_t width = 0;
    size_t height = 1;
};

/**
 * Merges each run of consecutive `copies` with the same buffers and width whose sources and destinations step by one
 * constant pitch each (positive, at least the width, at most `maxPitch`) into one strided copy. Order is kept.
 */
std::vector<StridedCopy> mergeCopies(const std::vector<ByteCopy>& copies, size_t maxPitch);

/**
 * Copies queued by queueCopies: wait() waits for every backend they went to; the destructor waits too (the graphs and
 * the rows they read stay valid until then), so an exception between queueing and waiting cannot leave copies running.
 * Holds the copy backends until then: a backend's graph compute is not safe from two threads at once (its CUDA-graph
 * bookkeeping, the CPU backend's work buffer), and a stream being captured into a CUDA graph must not be waited on.
 */
class QueuedCopies {
    public:
        QueuedCopies(const LlamaFunctions& functions) : functions(functions) {}
        QueuedCopies(const QueuedCopies&) = delete;
        QueuedCopies& operator=(const QueuedCopies&) = delete;
        QueuedCopies(QueuedCopies&& other) noexcept;
        ~QueuedCopies();
        void wait();
        /** Copy operations queued (or made synchronously where a device has no backend). */
        size_t count = 0;

    private:
        friend QueuedCopies queueCopies(const LlamaFunctions& functions, const std::vector<StridedCopy>& copies);
        const LlamaFunctions& functions;
        std::vector<ggml_backend_t> backends;  // queued on, not yet waited for
        std::vector<ggml_context*> graphs;     // the graphs' tensors, freed once waited for
        std::unique_lock<std::mutex> lock;     // on the copy backends, from queueing to the wait
};

/**
 * Queues `copies` on the destination device's copy backend (one kept per device for the process's life), one ggml
 * graph of GGML_OP_CPY nodes per backend, computed asynchronously; where a device has no backend, copies
 * synchronously instead. Every graph is built before any is queued: a failure to build one throws
 * std::runtime_error with nothing queued.
 */
QueuedCopies queueCopies(const LlamaFunctions& functions, const std::vector<StridedCopy>& copies);
