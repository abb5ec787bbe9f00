// A synthetic chunk KV for the codec's standalone tools: per-channel log-normal spreads with a few outlier K channels
// and AR(1) drift across tokens, as f16 bits; a chunk of such layers as the encoder takes it.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "half.h"
#include "kv_codec.h"

inline std::vector<uint16_t> syntheticTensor(std::mt19937& rng, uint32_t tokens, uint32_t width, bool outliers) {
    std::normal_distribution<float> n(0, 1);
    std::uniform_real_distribution<float> u(0, 1);
    std::vector<float> mean(width), spread(width), drift(width, 0);
    for (uint32_t c = 0; c < width; c++) {
        mean[c] = outliers ? n(rng) * 0.5f : 0;
        spread[c] = std::exp(n(rng) * 0.5f) * (outliers && u(rng) < 0.02f ? 8 : 1);
    }
    std::vector<uint16_t> out((size_t) tokens * width);
    for (uint32_t t = 0; t < tokens; t++)
        for (uint32_t c = 0; c < width; c++) {
            drift[c] = 0.8f * drift[c] + 0.6f * n(rng);
            out[(size_t) t * width + c] = weft_half::floatToHalf(mean[c] + spread[c] * (0.7f * drift[c] + 0.5f * n(rng)));
        }
    return out;
}

/** A chunk's K (with outlier channels) and V per layer, and the encoder's view of them (V transposed or in rows). */
struct SyntheticChunk {
    std::vector<std::vector<uint16_t>> k, v;
    std::vector<weft_codec::LayerIn> layers;
};

inline SyntheticChunk syntheticChunk(std::mt19937& rng, uint32_t nLayer, uint32_t tokens, uint32_t width, bool vTrans = false) {
    SyntheticChunk chunk;
    for (uint32_t l = 0; l < nLayer; l++) {
        chunk.k.push_back(syntheticTensor(rng, tokens, width, true));
        chunk.v.push_back(syntheticTensor(rng, tokens, width, false));
    }
    for (uint32_t l = 0; l < nLayer; l++)
        chunk.layers.push_back(weft_codec::LayerIn{weft_codec::TensorIn{chunk.k[l].data(), width, width, 1},
            vTrans ? weft_codec::TensorIn{chunk.v[l].data(), width, 1, tokens} : weft_codec::TensorIn{chunk.v[l].data(), width, width, 1}});
    return chunk;
}
