// Pinned host memory (the first GPU device's host buffer type), grown on demand and kept between calls: allocating
// it costs milliseconds, and copies between it and the device run at DMA speed where pageable memory is several times
// slower. Not thread-safe: its owner serializes use (the splice's mutex, a capture context's mutex).
#pragma once

#include <cstddef>
#include <cstdint>

#include "llama_functions.h"

class PinnedBuffer {
    public:
        /**
         * At least `bytes` of pinned memory (allocating `bytes + slack` when it must grow, so slightly larger requests
         * later do not re-pin), or null where there is no GPU host buffer type or the allocation fails.
         */
        uint8_t* reserve(const LlamaFunctions& functions, size_t bytes, size_t slack = 0);

        /** Frees the memory; returns the bytes freed. */
        size_t release(const LlamaFunctions& functions);

        size_t size() const { return capacity; }

    private:
        ggml_backend_buffer_t buffer = nullptr;
        size_t capacity = 0;
};
