// What the capture's eval callback does inside llama_decode: find layer N's K/V cache writes and copy their sources
// out of the graph. The capture contexts and the entry point are in layer_capture.cpp.
#include "capture_graph.h"

#include <cctype>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "half.h"

namespace {

// Host memory for reading `bytes` of a tensor: the run's pinned staging buffer when the tensor is in device memory and
// a GPU host buffer type exists, else `fallback`.
uint8_t* readBuffer(const LlamaFunctions& functions, CaptureRun& run, const ggml_tensor* tensor, size_t bytes, std::vector<uint8_t>& fallback) {
    if (run.staging != nullptr && !functions.ggml_backend_buffer_is_host(tensor->buffer))
        if (uint8_t* pinned = run.staging->reserve(functions, bytes); pinned != nullptr)
            return pinned;
    fallback.resize(bytes);
    return fallback.data();
}

/** Copies a (possibly strided, possibly device-resident) F32/F16 tensor to host floats, in logical order. */
void appendTensorAsFloats(const LlamaFunctions& functions, CaptureRun& run, const ggml_tensor* tensor, std::vector<float>& out) {
    if (tensor->type != GGML_TYPE_F32 && tensor->type != GGML_TYPE_F16)
        throw std::runtime_error(std::string("tensor ") + tensor->name + " has ggml type " + std::to_string(tensor->type) +
            ", expected F32 or F16");
    if (tensor->buffer == nullptr || tensor->data == nullptr)
        throw std::runtime_error(std::string("tensor ") + tensor->name + " is not allocated");

    const size_t elementSize = tensor->type == GGML_TYPE_F32 ? 4 : 2;
    const int64_t* ne = tensor->ne;
    const size_t* nb = tensor->nb;
    const size_t count = (size_t) (ne[0] * ne[1] * ne[2] * ne[3]);
    std::vector<uint8_t> rawOwned, wholeOwned;
    uint8_t* raw = nullptr;

    const bool contiguous = nb[0] == elementSize && nb[1] == nb[0] * ne[0] && nb[2] == nb[1] * ne[1] &&
        nb[3] == nb[2] * ne[2];
    if (contiguous) {
        raw = readBuffer(functions, run, tensor, count * elementSize, rawOwned);
        functions.ggml_backend_tensor_get(tensor, raw, 0, count * elementSize);
    } else {
        // One read of the whole span the view covers, then a gather on the host: a read per row is a synchronous
        // device-to-host copy each.
        size_t span = elementSize;
        for (int dim = 0; dim < 4; dim++)
            span += (size_t) (ne[dim] - 1) * nb[dim];
        uint8_t* whole = readBuffer(functions, run, tensor, span, wholeOwned);
        functions.ggml_backend_tensor_get(tensor, whole, 0, span);
        rawOwned.resize(count * elementSize);
        raw = rawOwned.data();
        size_t at = 0;
        for (int64_t i3 = 0; i3 < ne[3]; i3++)
            for (int64_t i2 = 0; i2 < ne[2]; i2++)
                for (int64_t i1 = 0; i1 < ne[1]; i1++) {
                    const uint8_t* row = whole + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
                    if (nb[0] == elementSize) {
                        std::memcpy(raw + at, row, ne[0] * elementSize);
                        at += ne[0] * elementSize;
                    } else {
                        for (int64_t i0 = 0; i0 < ne[0]; i0++, at += elementSize)
                            std::memcpy(raw + at, row + i0 * nb[0], elementSize);
                    }
                }
    }

    size_t start = out.size();
    out.resize(start + count);
    if (tensor->type == GGML_TYPE_F32) {
        std::memcpy(out.data() + start, raw, count * sizeof(float));
    } else {
        const uint16_t* halves = reinterpret_cast<const uint16_t*>(raw);
        for (size_t i = 0; i < count; i++)
            out[start + i] = halfToFloat(halves[i]);
    }
}

/** The layer number at the end of a graph name ("attn_norm-3" -> 3), or -1. */
int layerOfName(const char* name, size_t maxLength) {
    size_t length = strnlen(name, maxLength);
    size_t dash = length;
    while (dash > 0 && name[dash - 1] != '-')
        dash--;
    if (dash == 0 || dash == length)
        return -1;
    int layer = 0;
    for (size_t i = dash; i < length; i++) {
        if (!std::isdigit((unsigned char) name[i]) || layer > 1000000)
            return -1;
        layer = layer * 10 + (name[i] - '0');
    }
    return layer;
}

/** 'k' or 'v' when `node` is a SET_ROWS into the K or V cache tensor of `layer` ("cache_k_l<il>", "cache_<tag>v_l<il>"). */
char cacheWriteKind(const ggml_tensor* node, int layer) {
    if (node->op != GGML_OP_SET_ROWS || node->src[0] == nullptr)
        return 0;
    const ggml_tensor* target = node->src[2] != nullptr ? node->src[2] : node->view_src;
    if (target == nullptr)
        return 0;
    while (target->view_src != nullptr)
        target = target->view_src;

    std::string name(target->name, strnlen(target->name, GGML_MAX_NAME));
    if (name.rfind("cache_", 0) != 0)
        return 0;
    size_t at = name.rfind("_l");
    if (at == std::string::npos || at < 7 || name[at - 2] != '_')
        return 0;
    char kind = name[at - 1];
    if (kind != 'k' && kind != 'v')
        return 0;
    std::string suffix = "-" + name.substr(at + 2);
    if (layerOfName(suffix.c_str(), suffix.size() + 1) != layer)
        return 0;
    return kind;
}

} // namespace

bool captureEvalCallback(ggml_tensor* tensor, bool ask, void* userData) {
    CaptureRun* run = *static_cast<CaptureRun* const*>(userData);
    if (run == nullptr)
        return !ask;

    if (ask) {
        // Once done, want the first node of any later split, so that split stops after one node.
        if (run->finished)
            return true;
        if (!run->inLayer && layerOfName(tensor->name, GGML_MAX_NAME) == run->layer)
            run->inLayer = true;
        // Inside the layer, stop at the K/V nodes and the cache writes: each is then its own compute step, so no fusion
        // (e.g. RoPE written straight into the cache) can skip materializing the tensor the cache write reads. Stopping
        // at every node of the layer gave the same K/V (0 difference over 16.9 M values on an H200) and was 8% slower:
        // each stop is a synchronization on a GPU (bench/GPU.md).
        if (run->inLayer)
            return tensor->op == GGML_OP_SET_ROWS || strncmp(tensor->name, "Kcur-", 5) == 0 || strncmp(tensor->name, "Vcur-", 5) == 0;
        return tensor->op == GGML_OP_SET_ROWS;
    }

    if (run->finished)
        return false;

    try {
        char kind = cacheWriteKind(tensor, run->layer);
        const ggml_tensor* source = tensor->src[0];
        const auto copyStarted = std::chrono::steady_clock::now();
        struct CopyTimer {
            CaptureRun* run;
            std::chrono::steady_clock::time_point started;
            ~CopyTimer() { run->copyMs += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count(); }
        } copyTimer{run, copyStarted};
        if (kind == 'k' && !run->kSeen) {
            appendTensorAsFloats(*run->functions, *run, source, run->k);
            run->kSeen = true;
            run->kSource = std::string(source->name, strnlen(source->name, GGML_MAX_NAME));
        } else if (kind == 'v' && !run->vSeen) {
            appendTensorAsFloats(*run->functions, *run, source, run->v);
            run->vSeen = true;
            run->vSource = std::string(source->name, strnlen(source->name, GGML_MAX_NAME));
        }
    } catch (const std::exception& error) {
        run->error = error.what();
    } catch (...) {
        run->error = "unknown error while copying a tensor";
    }

    if (!run->error.empty() || (run->kSeen && run->vSeen)) {
        run->finished = true;
        return false;
    }
    return true;
}
