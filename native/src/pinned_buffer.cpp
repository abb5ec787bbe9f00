#include "pinned_buffer.h"

uint8_t* PinnedBuffer::reserve(const LlamaFunctions& functions, size_t bytes, size_t slack) {
    if (capacity < bytes) {
        release(functions);
        ggml_backend_buffer_type_t host = gpuHostBufferType(functions);
        if (host == nullptr)
            return nullptr;
        buffer = functions.ggml_backend_buft_alloc_buffer(host, bytes + slack);
        if (buffer == nullptr)
            return nullptr;
        capacity = bytes + slack;
    }
    return static_cast<uint8_t*>(functions.ggml_backend_buffer_get_base(buffer));
}

size_t PinnedBuffer::release(const LlamaFunctions& functions) {
    const size_t freed = capacity;
    if (buffer != nullptr && functions.ggml_backend_buffer_free != nullptr)
        functions.ggml_backend_buffer_free(buffer);
    buffer = nullptr;
    capacity = 0;
    return freed;
}
