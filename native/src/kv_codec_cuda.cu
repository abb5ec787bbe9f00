// The KV codec's GPU decoder (kv_codec_cuda.h): the host checks and plans (kv_codec_parallel_plan.cpp), the device runs
// the steps of kv_codec_parallel.h as six kernels, one thread per rANS state, row, channel or (row, head).
#include "kv_codec_cuda.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kv_codec.h"
#include "kv_codec_parallel.h"
#include "kv_codec_parallel_plan.h"

using namespace weft_codec;
using parallel::ChannelPlan;
using parallel::SectionPlan;

namespace {

constexpr uint32_t kBlock = 128;

uint32_t blocksFor(uint64_t threads) {
    return (uint32_t) ((threads + kBlock - 1) / kBlock);
}

__global__ void symbolsKernel(const uint8_t* data, const SectionPlan* sections, uint32_t nSections, const ChannelPlan* channels,
        const uint32_t* slots, uint8_t* symbols, uint32_t* errors) {
    const uint64_t id = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t section = id / parallel::kMaxStates;
    const uint32_t k = (uint32_t) (id % parallel::kMaxStates);
    if (section >= nSections || k >= sections[section].S)
        return;
    const uint32_t error = parallel::stateSymbols(data, sections[section], channels, slots, k, symbols);
    if (error != parallel::sectionOk)
        atomicMax(&errors[section], error);
}

__global__ void countsKernel(const SectionPlan* sections, uint32_t nSections, uint32_t nTokens, const ChannelPlan* channels,
        const uint8_t* symbols, const uint32_t* errors, uint64_t* rowBits, uint64_t* rowEscapes) {
    const uint64_t id = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t section = id / nTokens;
    const uint32_t t = (uint32_t) (id % nTokens);
    if (section >= nSections || errors[section] != parallel::sectionOk)
        return;
    const SectionPlan& s = sections[section];
    uint32_t bits, escapes;
    parallel::rowCounts(s, channels, symbols, t, bits, escapes);
    rowBits[s.rowAt + t] = bits;
    rowEscapes[s.rowAt + t] = escapes;
}

__global__ void scanKernel(const SectionPlan* sections, uint32_t nSections, uint64_t* rowBits, uint64_t* rowEscapes, uint32_t* errors) {
    const uint64_t section = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (section >= nSections || errors[section] != parallel::sectionOk)
        return;
    errors[section] = parallel::scanRows(sections[section], rowBits, rowEscapes);
}

__global__ void valuesKernel(const uint8_t* data, const SectionPlan* sections, uint32_t nSections, uint32_t nTokens, const ChannelPlan* channels,
        const uint8_t* symbols, const uint64_t* rowBits, const uint64_t* rowEscapes, const uint32_t* errors, int32_t* values) {
    const uint64_t id = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t section = id / nTokens;
    if (section >= nSections || errors[section] != parallel::sectionOk)
        return;
    parallel::rowValues(data, sections[section], channels, symbols, rowBits, rowEscapes, (uint32_t) (id % nTokens), values);
}

__global__ void channelsKernel(const SectionPlan* sections, uint32_t nSections, uint32_t maxC, const ChannelPlan* channels,
        const uint32_t* errors, int32_t* values) {
    const uint64_t id = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t section = id / maxC;
    const uint32_t c = (uint32_t) (id % maxC);
    if (section >= nSections || errors[section] != parallel::sectionOk || c >= sections[section].C)
        return;
    parallel::channelValues(sections[section], channels, c, values);
}

__global__ void rotateKernel(const SectionPlan* sections, uint32_t nSections, uint32_t nTokens, uint32_t maxHeads, const uint32_t* errors,
        const int32_t* values, const float* rotation) {
    const uint64_t id = (uint64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t section = id / ((uint64_t) nTokens * maxHeads);
    if (section >= nSections || errors[section] != parallel::sectionOk || !sections[section].rotate)
        return;
    const SectionPlan& s = sections[section];
    const uint32_t rest = (uint32_t) (id % ((uint64_t) nTokens * maxHeads));
    const uint32_t t = rest / maxHeads, head = rest % maxHeads;
    if (head < s.C / s.headDim)
        parallel::rotateHead(s, values, rotation, t, head);
}

// Memory a decode needs (device, or pinned host memory for the upload), kept from one decode to the next and grown
// when a larger one comes.
struct Buffer {
    bool host = false;
    void* data = nullptr;
    size_t bytes = 0;
    cudaError_t reserve(size_t want) {
        if (want <= bytes)
            return cudaSuccess;
        host ? cudaFreeHost(data) : cudaFree(data);
        data = nullptr;
        bytes = 0;
        const cudaError_t error = host ? cudaMallocHost(&data, want) : cudaMalloc(&data, want);
        if (error == cudaSuccess)
            bytes = want;
        return error;
    }
};

struct Decoder {
    std::mutex mutex;
    cudaStream_t stream = nullptr;
    cudaEvent_t events[3] = {};
    Buffer slots, container, sections, channels, rotation, symbols, values, rowBits, rowEscapes, errors;
    Buffer staging{true};
    bool ready = false;
};

Decoder& decoder() {
    static Decoder* d = new Decoder();  // never destroyed: the CUDA runtime may be gone at exit
    return *d;
}

int failWith(Error error, const std::string& text, char* detail, size_t detailBytes) {
    if (detail != nullptr && detailBytes > 0) {
        std::strncpy(detail, text.c_str(), detailBytes - 1);
        detail[detailBytes - 1] = 0;
    }
    return (int) error;
}

int cudaFailure(cudaError_t error, const char* what, char* detail, size_t detailBytes) {
    // Not the file's fault: "corrupt" would drop a good entry, so the caller gets a distinct code and the reason.
    failWith(Error::none, std::string("CUDA: ") + what + ": " + cudaGetErrorString(error), detail, detailBytes);
    return -1;
}

} // namespace

extern "C" int weft_codec_cuda_decode(const uint8_t* data, size_t size, const uint8_t* fingerprint, uint16_t* const* kOut, uint16_t* const* vOut,
        uint32_t nLayer, char* detail, size_t detailBytes, WeftCodecCudaTimes* times) {
    Decoder& d = decoder();
    std::lock_guard<std::mutex> lock(d.mutex);
    const auto planStart = std::chrono::steady_clock::now();
    std::string text;
    Header header;
    DecodeExpect expect;
    expect.fingerprint = fingerprint;
    Error error = parseHeader(data, size, expect, header, text);
    if (error != Error::none)
        return failWith(error, text, detail, detailBytes);
    if (header.nLayer != nLayer)
        return failWith(Error::wrongShape, std::to_string(header.nLayer) + " layers, the output has " + std::to_string(nLayer), detail, detailBytes);
    std::vector<LayerOut> out(nLayer);
    for (uint32_t il = 0; il < nLayer; il++)
        out[il] = LayerOut{kOut[il], vOut[il]};
    ParallelPlan plan;
    error = planParallelDecode(data, size, header, out, parallel::kScale, plan, text);
    if (error != Error::none)
        return failWith(error, text, detail, detailBytes);
    const float planMs = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - planStart).count();

    cudaError_t status = cudaSuccess;
    if (!d.ready) {
        if ((status = cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking)) != cudaSuccess)
            return cudaFailure(status, "stream", detail, detailBytes);
        for (cudaEvent_t& event : d.events)
            if ((status = cudaEventCreate(&event)) != cudaSuccess)
                return cudaFailure(status, "event", detail, detailBytes);
        const std::vector<uint32_t> packed = packedParallelSlots();
        if ((status = d.slots.reserve(packed.size() * 4)) != cudaSuccess ||
            (status = cudaMemcpy(d.slots.data, packed.data(), packed.size() * 4, cudaMemcpyHostToDevice)) != cudaSuccess)
            return cudaFailure(status, "entropy tables", detail, detailBytes);
        d.ready = true;
    }
    const uint32_t nSections = (uint32_t) plan.sections.size();
    const uint32_t nTokens = header.nTokens;
    uint32_t maxC = 1, maxHeads = 1;
    for (const SectionPlan& s : plan.sections) {
        maxC = std::max(maxC, s.C);
        if (s.rotate)
            maxHeads = std::max(maxHeads, s.C / s.headDim);
    }
    const size_t rotationBytes = header.rotation.size() * sizeof(float);
    if ((status = d.container.reserve(size)) != cudaSuccess || (status = d.staging.reserve(size)) != cudaSuccess ||
        (status = d.sections.reserve(nSections * sizeof(SectionPlan))) != cudaSuccess ||
        (status = d.channels.reserve(std::max<size_t>(1, plan.channels.size()) * sizeof(ChannelPlan))) != cudaSuccess ||
        (status = d.rotation.reserve(std::max<size_t>(4, rotationBytes))) != cudaSuccess ||
        (status = d.symbols.reserve(std::max<uint64_t>(1, plan.values))) != cudaSuccess ||
        (status = d.values.reserve(std::max<uint64_t>(1, plan.values) * 4)) != cudaSuccess ||
        (status = d.rowBits.reserve((size_t) plan.rows * 8)) != cudaSuccess ||
        (status = d.rowEscapes.reserve((size_t) plan.rows * 8)) != cudaSuccess ||
        (status = d.errors.reserve(nSections * 4)) != cudaSuccess)
        return cudaFailure(status, "device memory", detail, detailBytes);

    std::memcpy(d.staging.data, data, size);
    cudaEventRecord(d.events[0], d.stream);
    cudaMemcpyAsync(d.container.data, d.staging.data, size, cudaMemcpyHostToDevice, d.stream);
    cudaMemcpyAsync(d.sections.data, plan.sections.data(), nSections * sizeof(SectionPlan), cudaMemcpyHostToDevice, d.stream);
    cudaMemcpyAsync(d.channels.data, plan.channels.data(), plan.channels.size() * sizeof(ChannelPlan), cudaMemcpyHostToDevice, d.stream);
    if (rotationBytes > 0)
        cudaMemcpyAsync(d.rotation.data, header.rotation.data(), rotationBytes, cudaMemcpyHostToDevice, d.stream);
    cudaMemsetAsync(d.errors.data, 0, nSections * 4, d.stream);
    // The plans are host vectors: the copies must finish before they go out of scope (below, with the kernels).
    cudaEventRecord(d.events[1], d.stream);

    const auto* bytes = static_cast<const uint8_t*>(d.container.data);
    const auto* sections = static_cast<const SectionPlan*>(d.sections.data);
    const auto* channels = static_cast<const ChannelPlan*>(d.channels.data);
    auto* symbols = static_cast<uint8_t*>(d.symbols.data);
    auto* values = static_cast<int32_t*>(d.values.data);
    auto* rowBits = static_cast<uint64_t*>(d.rowBits.data);
    auto* rowEscapes = static_cast<uint64_t*>(d.rowEscapes.data);
    auto* errors = static_cast<uint32_t*>(d.errors.data);
    const uint64_t rows = (uint64_t) nSections * nTokens;
    symbolsKernel<<<blocksFor((uint64_t) nSections * parallel::kMaxStates), kBlock, 0, d.stream>>>(bytes, sections, nSections, channels,
        static_cast<const uint32_t*>(d.slots.data), symbols, errors);
    if (rows > 0) {
        countsKernel<<<blocksFor(rows), kBlock, 0, d.stream>>>(sections, nSections, nTokens, channels, symbols, errors, rowBits, rowEscapes);
        scanKernel<<<blocksFor(nSections), kBlock, 0, d.stream>>>(sections, nSections, rowBits, rowEscapes, errors);
        valuesKernel<<<blocksFor(rows), kBlock, 0, d.stream>>>(bytes, sections, nSections, nTokens, channels, symbols, rowBits, rowEscapes,
            errors, values);
    } else {
        scanKernel<<<blocksFor(nSections), kBlock, 0, d.stream>>>(sections, nSections, rowBits, rowEscapes, errors);
    }
    channelsKernel<<<blocksFor((uint64_t) nSections * maxC), kBlock, 0, d.stream>>>(sections, nSections, maxC, channels, errors, values);
    if (rotationBytes > 0 && rows > 0)
        rotateKernel<<<blocksFor(rows * maxHeads), kBlock, 0, d.stream>>>(sections, nSections, nTokens, maxHeads, errors, values,
            static_cast<const float*>(d.rotation.data));
    cudaEventRecord(d.events[2], d.stream);
    std::vector<uint32_t> sectionErrors(nSections);
    cudaMemcpyAsync(sectionErrors.data(), errors, nSections * 4, cudaMemcpyDeviceToHost, d.stream);
    if ((status = cudaStreamSynchronize(d.stream)) != cudaSuccess || (status = cudaGetLastError()) != cudaSuccess)
        return cudaFailure(status, "decode kernels", detail, detailBytes);
    if (times != nullptr) {
        times->planMs = planMs;
        cudaEventElapsedTime(&times->uploadMs, d.events[0], d.events[1]);
        cudaEventElapsedTime(&times->kernelsMs, d.events[1], d.events[2]);
    }
    for (uint32_t i = 0; i < nSections; i++)
        if (sectionErrors[i] != parallel::sectionOk)
            return failWith(Error::corrupt, "layer " + std::to_string(i / 2) + (i % 2 == 0 ? " K: " : " V: ") + sectionErrorText(sectionErrors[i]),
                detail, detailBytes);
    return failWith(Error::none, "", detail, detailBytes);
}
