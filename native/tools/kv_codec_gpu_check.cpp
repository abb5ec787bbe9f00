// The KV codec's GPU decoder on a real GPU (needs one; scripts/gpu-codec-check.sh builds and runs it): a synthetic chunk
// of an 8B-shape model (32 layers x 512 tokens x 1024 wide K and V, Llama 3's RoPE on K) encoded at several levels,
// decoded by the host decoder on every core and by weft_codec_cuda_decode into device memory. Checks that the two
// outputs are the same bits, times both (median of the runs; MB/s counted in f16 output bytes) and then decodes a
// damaged copy, which must be refused. Prints one line per level; exits 1 on any difference.
//
// Build (the host side goes to the host compiler: nvcc passes .cpp files on):
//        nvcc -O3 -std=c++17 -arch=sm_90 -Inative/src native/tools/kv_codec_gpu_check.cpp native/src/kv_codec_cuda.cu
//        native/src/kv_codec_{tables,encode,decode,format,output,parallel_plan}.cpp -o kvgc
// Run:   ./kvgc [layers 32] [tokens 512] [width 1024] [runs 10]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

#include "kv_codec.h"
#include "kv_codec_cuda.h"
#include "synthetic_kv.h"

using namespace weft_codec;

namespace {

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

bool check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        std::printf("CUDA error (%s): %s\n", what, cudaGetErrorString(status));
    return status == cudaSuccess;
}

} // namespace

int main(int argc, char** argv) {
    const uint32_t nLayer = argc > 1 ? std::atoi(argv[1]) : 32, tokens = argc > 2 ? std::atoi(argv[2]) : 512;
    const uint32_t width = argc > 3 ? std::atoi(argv[3]) : 1024, runs = argc > 4 ? std::atoi(argv[4]) : 10;
    const uint32_t threads = std::max(1u, std::thread::hardware_concurrency());
    cudaDeviceProp prop{};
    if (!check(cudaGetDeviceProperties(&prop, 0), "device"))
        return 1;
    std::mt19937 rng(1);
    const SyntheticChunk chunk = syntheticChunk(rng, nLayer, tokens, width);
    const size_t perTensor = (size_t) tokens * width;
    const double f16Bytes = 2.0 * 2 * nLayer * perTensor;

    std::vector<uint16_t> hostOut(2 * nLayer * perTensor), deviceCopy(hostOut.size());
    std::vector<LayerOut> hostOuts;
    for (uint32_t l = 0; l < nLayer; l++)
        hostOuts.push_back(LayerOut{hostOut.data() + 2 * l * perTensor, hostOut.data() + (2 * l + 1) * perTensor});
    uint16_t* device = nullptr;
    if (!check(cudaMalloc(&device, hostOut.size() * 2), "output"))
        return 1;
    std::vector<uint16_t*> kOut(nLayer), vOut(nLayer);
    for (uint32_t l = 0; l < nLayer; l++) {
        kOut[l] = device + 2 * l * perTensor;
        vOut[l] = device + (2 * l + 1) * perTensor;
    }
    std::printf("%s (%d SMs); %u layers x %u tokens x %u wide K and V (%.1f MB of f16), K with Llama 3's RoPE; host decoder on %u threads\n",
        prop.name, prop.multiProcessorCount, nLayer, tokens, width, f16Bytes / 1e6, threads);
    bool ok = true;
    for (uint32_t level : {0u, kDefaultLevel, kLevelCount - 1}) {
        EncodeOptions options;
        options.level = level;
        options.threads = threads;
        options.rope.kind = 2;
        options.rope.nRot = options.rope.headDim = 128;
        options.rope.freqBase = 500000;
        options.rope.firstPos = 1;
        const std::vector<uint8_t> file = encode(tokens, chunk.layers, options);
        std::vector<double> hostMs, gpuMs, planMs, uploadMs, kernelsMs;
        std::string detail;
        for (uint32_t r = 0; r < runs; r++) {
            auto t0 = std::chrono::steady_clock::now();
            Header header;
            if (parseHeader(file.data(), file.size(), DecodeExpect{}, header, detail) != Error::none ||
                decodeAll(file.data(), file.size(), header, hostOuts, threads, detail) != Error::none) {
                std::printf("level %u: the host decoder failed: %s\n", level, detail.c_str());
                return 1;
            }
            hostMs.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            char text[256];
            WeftCodecCudaTimes times{};
            t0 = std::chrono::steady_clock::now();
            const int error = weft_codec_cuda_decode(file.data(), file.size(), nullptr, kOut.data(), vOut.data(), nLayer, text, sizeof(text), &times);
            gpuMs.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            if (error != 0) {
                std::printf("level %u: the GPU decoder failed (%d): %s\n", level, error, text);
                return 1;
            }
            planMs.push_back(times.planMs);
            uploadMs.push_back(times.uploadMs);
            kernelsMs.push_back(times.kernelsMs);
        }
        if (!check(cudaMemcpy(deviceCopy.data(), device, deviceCopy.size() * 2, cudaMemcpyDeviceToHost), "copy back"))
            return 1;
        size_t differing = 0;
        for (size_t i = 0; i < hostOut.size(); i++)
            differing += hostOut[i] != deviceCopy[i];
        // A damaged copy (one byte of layer 0's payload changed, its checksum left): refused as the host refuses it.
        std::vector<uint8_t> damaged = file;
        damaged[damaged.size() / 2] ^= 0x10;
        char text[256];
        const int refused = weft_codec_cuda_decode(damaged.data(), damaged.size(), nullptr, kOut.data(), vOut.data(), nLayer, text, sizeof(text), nullptr);
        ok = ok && differing == 0 && refused == (int) Error::checksum;
        std::printf("level %u: %.2fx smaller than f16 (%.1f MB over the bus); host %.1f ms (%.0f MB/s); GPU %.2f ms wall (%.0f MB/s): plan %.2f, "
            "upload %.2f, kernels %.2f ms; %zu of %zu values differ; damaged copy: %s (%s)\n",
            level, f16Bytes / file.size(), file.size() / 1e6, median(hostMs), f16Bytes / 1e6 / (median(hostMs) / 1e3), median(gpuMs),
            f16Bytes / 1e6 / (median(gpuMs) / 1e3), median(planMs), median(uploadMs), median(kernelsMs), differing, hostOut.size(),
            errorReason((Error) refused), text);
    }
    cudaFree(device);
    std::printf("gpu-codec-check: %s\n", ok ? "the GPU decoder matches the host decoder bit for bit" : "DIFFERENCES (see above)");
    return ok ? 0 : 1;
}
