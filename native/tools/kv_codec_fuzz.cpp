// libFuzzer harness for the KV codec's decoder (parseHeader, then decodeLayer for every layer), under AddressSanitizer
// and UndefinedBehaviorSanitizer: every input must end in an Error or a decode, with no out-of-bounds access, no
// undefined arithmetic and no allocation beyond what the checked shape allows.
//
// The checksums (one per layer, one over the header) would stop almost every mutation before the entropy decoder, so
// a custom mutator recomputes them after libFuzzer's mutation, three times in four: most inputs then reach the rANS
// streams, the per-channel parameters and the escapes with valid-looking framing. Seeds are real containers written
// by this same file built as a seed writer (-DKV_CODEC_FUZZ_SEEDS): several levels, shapes and the RoPE block.
//
// Build and run: scripts/fuzz-codec.sh [seconds] (clang++ with -fsanitize=fuzzer,address,undefined).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "half.h"
#include "kv_codec.h"
#include "kv_codec_detail.h"

using namespace weft_codec;
using weft_codec::detail::kFixedHeader;
using weft_codec::detail::kLayerEntry;

namespace {

// The most output one input may make the harness allocate: parsed shapes above it are checked but not decoded (the
// decoder's own bound is the shape the header declares, which the parser ties to the file's size).
constexpr uint64_t kMaxOutputBytes = 32ull << 20;

uint32_t read32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

void write32(uint8_t* p, uint32_t v) {
    std::memcpy(p, &v, 4);
}

uint64_t read64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// Recomputes the layers' checksums and the header's where the layout still frames them; leaves the rest as it is.
void fixChecksums(uint8_t* data, size_t size) {
    if (size < kFixedHeader)
        return;
    const uint32_t nLayer = read32(data + 36), flags = read32(data + 40), metaBytes = read32(data + 44);
    if (nLayer == 0 || nLayer > kMaxLayers || metaBytes > kMaxMetaBytes)
        return;
    uint64_t ropeBytes = 0;
    const uint64_t ropeAt = kFixedHeader + (uint64_t) kLayerEntry * nLayer;
    if (flags & 2) {
        if (size < ropeAt + 28)
            return;
        const uint32_t nFactors = read32(data + ropeAt + 24);
        if (nFactors > kMaxEmbd)
            return;
        ropeBytes = 28 + 4ull * nFactors;
    }
    const uint64_t headerBytes = ropeAt + ropeBytes + metaBytes + 4;
    if (size < headerBytes)
        return;
    for (uint32_t il = 0; il < nLayer; il++) {
        uint8_t* e = data + kFixedHeader + (size_t) il * kLayerEntry;
        const uint64_t offset = read64(e + 8), bytes = read64(e + 16);
        if (offset <= size - headerBytes && bytes <= size - headerBytes - offset)
            write32(e + 24, crc32(data + headerBytes + offset, bytes));
    }
    write32(data + headerBytes - 4, crc32(data, headerBytes - 4));
}

} // namespace

#ifndef KV_CODEC_FUZZ_SEEDS
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize, unsigned int seed) {
    size = LLVMFuzzerMutate(data, size, maxSize);
    if (seed % 4 != 0)
        fixChecksums(data, size);
    return size;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Header header;
    std::string detail;
    const Error parsed = parseHeader(data, size, DecodeExpect{}, header, detail);
    if (parsed != Error::none) {
        if (detail.empty())
            __builtin_trap();  // every refusal says why
        return 0;
    }
    uint64_t outputBytes = 0;
    for (const LayerInfo& layer : header.layers)
        outputBytes += 2ull * header.nTokens * (layer.nEmbdK + layer.nEmbdV);
    if (outputBytes > kMaxOutputBytes)
        return 0;
    if (size % 2 == 0) {  // layer by layer, as layers arriving one at a time would be
        std::vector<uint16_t> k, v;
        for (uint32_t il = 0; il < header.nLayer; il++) {
            const LayerInfo& layer = header.layers[il];
            k.assign((size_t) header.nTokens * layer.nEmbdK, 0);
            v.assign((size_t) header.nTokens * layer.nEmbdV, 0);
            detail.clear();
            const Error decoded = decodeLayer(data, size, header, il, LayerOut{k.data(), v.data()}, detail);
            if (decoded != Error::none && detail.empty())
                __builtin_trap();
        }
        return 0;
    }
    // the addon's path: one output buffer from allocateOutput, every layer on two threads
    auto* output = static_cast<uint16_t*>(allocateOutput(outputBytes));
    if (output == nullptr)
        return 0;
    std::vector<LayerOut> out;
    size_t at = 0;
    for (const LayerInfo& layer : header.layers) {
        out.push_back({output + at, output + at + (size_t) header.nTokens * layer.nEmbdK});
        at += (size_t) header.nTokens * (layer.nEmbdK + layer.nEmbdV);
    }
    detail.clear();
    const Error decoded = decodeAll(data, size, header, out, 2, detail);
    freeOutput(output);
    if (decoded != Error::none && detail.empty())
        __builtin_trap();
    return 0;
}
#else
// The seed writer: real containers of small synthetic chunk KVs (drifting per-channel values, a few outlier K
// channels), at every level, with and without the RoPE block and V transposed, into the directory given.
int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0, 1);
    int written = 0;
    for (uint32_t level = 0; level < kLevelCount; level++)
        for (int variant = 0; variant < 3; variant++) {
            const uint32_t tokens = variant == 0 ? 7 : variant == 1 ? 40 : 130, width = variant == 2 ? 128 : 64, layers = 1 + variant;
            std::vector<std::vector<uint16_t>> store;
            std::vector<LayerIn> in;
            for (uint32_t il = 0; il < layers; il++) {
                for (int t = 0; t < 2; t++) {
                    std::vector<uint16_t> values((size_t) tokens * width);
                    std::vector<float> drift(width, 0);
                    for (uint32_t i = 0; i < tokens; i++)
                        for (uint32_t c = 0; c < width; c++) {
                            drift[c] = 0.8f * drift[c] + 0.6f * n(rng);
                            const float outlier = t == 0 && c % 17 == 3 ? 8.0f : 1.0f;
                            values[(size_t) i * width + c] = floatToHalf(outlier * (0.7f * drift[c] + 0.5f * n(rng)));
                        }
                    store.push_back(std::move(values));
                }
                in.push_back({{store[store.size() - 2].data(), width, width, 1}, {store.back().data(), width, width, 1}});
            }
            EncodeOptions options;
            options.level = level;
            options.vTrans = variant == 1;
            const uint8_t meta[5] = {'s', 'e', 'e', 'd', (uint8_t) written};
            options.meta = meta;
            options.metaBytes = sizeof meta;
            if (variant == 2) {
                options.rope.kind = 2;
                options.rope.nRot = 64;
                options.rope.headDim = 64;
                options.rope.firstPos = 100;
                options.rope.freqBase = 500000;
            }
            const std::vector<uint8_t> bytes = encode(tokens, in, options);
            const std::string path = std::string(argv[1]) + "/seed-l" + std::to_string(level) + "-" + std::to_string(variant) + ".wkvz";
            FILE* f = std::fopen(path.c_str(), "wb");
            if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
                std::fprintf(stderr, "cannot write %s\n", path.c_str());
                return 1;
            }
            std::fclose(f);
            written++;
        }
    std::printf("%d seeds in %s\n", written, argv[1]);
    return 0;
}
#endif
