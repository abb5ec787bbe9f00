// Standalone throughput check of the KV codec (no Node): a synthetic chunk KV at a given shape (per-channel log-normal
// spreads with a few outlier K channels, AR(1) drift across tokens), encoded at each level and decoded with N threads.
// Build: g++ -O3 -std=c++17 -pthread -Inative/src native/src/kv_codec_{tables,encode,decode,format,output}.cpp native/tools/kv_codec_bench.cpp -o /tmp/kvb
// Run:   /tmp/kvb [layers 32] [tokens 512] [width 1024] [threads 2] [rope 1] [fresh 0] [level: all]
// rope 1: K coded un-rotated with Llama 3 8B's RoPE (neox, 128-wide heads, base 500000) and rotated back on decode, as
// the engine does; fresh 1: every decode writes a newly allocated output (the addon's path), 0: one reused buffer.
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "half.h"
#include "kv_codec.h"
#include "synthetic_kv.h"

using namespace weft_codec;

// CPU seconds of the whole process (all threads): on a shared machine, throughput per CPU-second says what the code
// does when it has the cores to itself.
static double cpuSeconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    const uint32_t nLayer = argc > 1 ? atoi(argv[1]) : 32, tokens = argc > 2 ? atoi(argv[2]) : 512, width = argc > 3 ? atoi(argv[3]) : 1024;
    const uint32_t threads = argc > 4 ? atoi(argv[4]) : 2;
    const bool rope = argc > 5 ? atoi(argv[5]) != 0 : true, fresh = argc > 6 && atoi(argv[6]) != 0;
    const int onlyLevel = argc > 7 ? atoi(argv[7]) : -1;
    std::mt19937 rng(1);
    const SyntheticChunk chunk = syntheticChunk(rng, nLayer, tokens, width);
    const std::vector<std::vector<uint16_t>>& k = chunk.k;
    const std::vector<std::vector<uint16_t>>& v = chunk.v;
    const std::vector<LayerIn>& layers = chunk.layers;
    const double f16Bytes = 2.0 * 2 * nLayer * tokens * width;
    std::vector<uint16_t> out((size_t) 2 * nLayer * tokens * width);
    std::vector<LayerOut> outs;
    for (uint32_t l = 0; l < nLayer; l++)
        outs.push_back(LayerOut{out.data() + (size_t) 2 * l * tokens * width, out.data() + (size_t) (2 * l + 1) * tokens * width});
    printf("shape: %u layers x %u tokens x %u wide (K and V), %u threads, %.1f MB f16, rope %d, fresh output %d\n", nLayer, tokens, width, threads,
        f16Bytes / 1e6, rope, fresh);
    for (uint32_t level = 0; level < kLevelCount; level++) {
        if (onlyLevel >= 0 && level != (uint32_t) onlyLevel)
            continue;
        EncodeOptions options;
        options.level = level;
        options.threads = threads;
        if (rope) {
            options.rope.kind = 2;
            options.rope.nRot = options.rope.headDim = 128;
            options.rope.freqBase = 500000;
        }
        auto t0 = std::chrono::steady_clock::now();
        std::vector<uint8_t> bytes = encode(tokens, layers, options);
        const double encodeS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        Header header;
        std::string detail;
        DecodeExpect expect;
        double best = 1e9, bestCpu = 1e9;
        uint16_t* freshOut = nullptr;
        std::vector<LayerOut> freshOuts;
        for (int r = 0; r < (onlyLevel >= 0 ? 20 : 5); r++) {
            t0 = std::chrono::steady_clock::now();
            const double c0 = cpuSeconds();
            freshOuts.clear();
            if (fresh) {
                // Not touched: the decode faults it in, as the addon's output does when no released buffer is kept
                // (allocateOutput would hand back the one just freed).
                std::free(freshOut);
                freshOut = (uint16_t*) std::malloc(out.size() * 2);
                for (uint32_t l = 0; l < nLayer; l++)
                    freshOuts.push_back(LayerOut{freshOut + (size_t) 2 * l * tokens * width, freshOut + (size_t) (2 * l + 1) * tokens * width});
            }
            if (parseHeader(bytes.data(), bytes.size(), expect, header, detail) != Error::none ||
                decodeAll(bytes.data(), bytes.size(), header, fresh ? freshOuts : outs, threads, detail) != Error::none) {
                printf("decode failed: %s\n", detail.c_str());
                return 1;
            }
            best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            bestCpu = std::min(bestCpu, cpuSeconds() - c0);
        }
        const std::vector<LayerOut>& decoded = fresh ? freshOuts : outs;
        double err = 0, pow = 0;
        for (uint32_t l = 0; l < nLayer; l++)
            for (size_t i = 0; i < (size_t) tokens * width; i++) {
                const float a = halfToFloat(k[l][i]), b = halfToFloat(decoded[l].k[i]);
                const float c = halfToFloat(v[l][i]), d = halfToFloat(decoded[l].v[i]);
                err += (a - b) * (a - b) + (c - d) * (c - d);
                pow += a * a + c * c;
            }
        std::free(freshOut);
        printf("level %u: %.3f bits/value, %.2fx smaller than f16, rel. RMSE %.4f, encode %.0f MB/s, decode %.0f MB/s wall, %.0f MB/s per CPU-second (f16 bytes)\n",
            level, bytes.size() * 8.0 / (f16Bytes / 2), f16Bytes / bytes.size(), std::sqrt(err / pow), f16Bytes / 1e6 / encodeS, f16Bytes / 1e6 / best,
            f16Bytes / 1e6 / bestCpu);
    }
    return 0;
}
