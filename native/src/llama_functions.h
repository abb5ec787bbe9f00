// The llama.cpp / ggml functions the addon calls, resolved at run time from the library node-llama-cpp loaded
// (the addon links no llama.cpp, so it works with whichever CPU / CUDA / Vulkan / Metal build is in the process).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

// X(name): every function the addon may call. Types come from the headers of the same llama.cpp tag.
#define WEFT_LLAMA_FUNCTIONS(X) \
    X(llama_state_seq_get_size) \
    X(llama_state_seq_get_data) \
    X(llama_state_seq_set_data) \
    X(llama_n_seq_max) \
    X(llama_n_ctx) \
    X(llama_n_batch) \
    X(llama_get_model) \
    X(llama_get_memory) \
    X(llama_memory_clear) \
    X(llama_context_default_params) \
    X(llama_init_from_model) \
    X(llama_free) \
    X(llama_decode) \
    X(llama_synchronize) \
    X(llama_batch_init) \
    X(llama_batch_free) \
    X(llama_model_n_layer) \
    X(ggml_backend_tensor_get) \
    X(ggml_backend_dev_count) \
    X(ggml_backend_dev_get) \
    X(ggml_backend_dev_type) \
    X(ggml_backend_dev_host_buffer_type) \
    X(ggml_backend_buft_alloc_buffer) \
    X(ggml_backend_buffer_get_base) \
    X(ggml_backend_buffer_free) \
    X(ggml_backend_buffer_get_type) \
    X(ggml_backend_tensor_set) \
    X(ggml_backend_tensor_copy) \
    X(ggml_backend_buft_get_device) \
    X(ggml_backend_dev_init) \
    X(ggml_backend_synchronize) \
    X(ggml_backend_buffer_is_host) \
    X(ggml_init) \
    X(ggml_free) \
    X(ggml_tensor_overhead) \
    X(ggml_graph_overhead_custom) \
    X(ggml_new_tensor_2d) \
    X(ggml_cpy) \
    X(ggml_new_graph_custom) \
    X(ggml_build_forward_expand) \
    X(ggml_backend_graph_compute_async) \
    X(llama_memory_seq_rm)

struct LlamaFunctions {
#define WEFT_DECLARE_POINTER(name) decltype(&::name) name = nullptr;
    WEFT_LLAMA_FUNCTIONS(WEFT_DECLARE_POINTER)
#undef WEFT_DECLARE_POINTER

    /** Path of the loaded library the functions were taken from, and its handle. */
    std::string library;
    void* handle = nullptr;
    /** Names that could not be resolved (empty when all were). */
    std::vector<std::string> missing;
};

/**
 * Resolves the functions (once successfully; a failed attempt is retried on the next call, since node-llama-cpp
 * may load its binary later). Never returns null; check `missing`.
 */
const LlamaFunctions& getLlamaFunctions();

/** Returns the resolved functions or throws std::runtime_error naming what is missing. */
const LlamaFunctions& requireLlamaFunctions();

/**
 * A function only some builds have (one a Weft patch adds), from the library the others were resolved from; null
 * when that build lacks it or the others are not resolved yet.
 */
void* findOptionalLlamaFunction(const char* name);

/** The first GPU device's pinned host buffer type, or null where no GPU backend is loaded. */
ggml_backend_buffer_type_t gpuHostBufferType(const LlamaFunctions& functions);
