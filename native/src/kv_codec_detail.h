// What the KV codec's files share (kv_codec.h is the public side): the entropy tables, the level rules, RoPE tables,
// little-endian helpers and the container's fixed sizes. Internal to kv_codec_*.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kv_codec.h"

namespace weft_codec::detail {

// Entropy tables. A channel's symbols are h in [-15, 15] (the quantized value, or its delta, above its raw low bits)
// and an escape. Each table is a two-sided geometric distribution of a given mean |h| (32 classes, log-spaced): the
// encoder picks per channel the class that codes it in the fewest bits, so a table costs one byte, not a histogram.
constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kRansL = 1u << 16;  // 32-bit state, 16-bit renormalization: at most one read per symbol
constexpr int kRange = 15;
constexpr uint32_t kSymbols = 2 * kRange + 2;
constexpr uint32_t kEscape = kSymbols - 1;
constexpr uint32_t kClasses = 32;
constexpr uint32_t kMaxShift = 7;  // raw low bits per value (3 bits of the channel's code byte)
constexpr uint32_t kGroup = 16;
// Interleaved rANS states, each with its own stream: 16 (two AVX2 vectors) for a tensor of at least kManyStatesFrom
// values, 4 for a smaller one, where each state's 8 bytes of overhead (its final value and its stream's length) tell.
constexpr uint32_t kMaxStates = 16;
constexpr uint32_t kFewStates = 4;
constexpr size_t kManyStatesFrom = 4096;
inline uint32_t statesFor(size_t values) { return values >= kManyStatesFrom ? kMaxStates : kFewStates; }

struct Table {
    uint16_t freq[kSymbols];
    uint16_t cum[kSymbols];
    float cost[kSymbols];  // bits
    // Per slot: symbol (bits 0-5), slot - cum (bits 6-17), freq (bits 18-30): one load per decoded symbol.
    uint32_t slot[kScale];
};

struct Tables {
    Table table[kClasses];
    float stepScale[256];  // a channel's step is the section's base step times stepScale[code]: 2^((code - 128) / 8)
    float minBits;  // the fewest bits any value can cost (the likeliest symbol of the narrowest table)
    float classMean[kClasses];
    float halfToFloat[65536];
};

const Tables& tables();

// Level: step = scale * (K or V factor) * layerFactor * spread^beta * tensorSpread^(1 - beta). L4 (the default) was
// re-tuned on the answer model (bench/RESULTS.md, issue #13 session 9): a flatter step across a tensor's channels
// (beta 0.25) and keys finer than values. The decoder reads every step from the container, so old files decode alike.
constexpr float kLevelScale[kLevelCount] = {0.04f, 0.12f, 0.3f, 0.55f, 0.9f, 2.3f};
constexpr float kLevelBeta[kLevelCount] = {0.5f, 0.5f, 0.5f, 0.5f, 0.25f, 0.5f};
constexpr float kLevelKFactor[kLevelCount] = {1.0f, 1.0f, 1.0f, 1.0f, 0.88f, 1.0f};
constexpr float kLevelVFactor[kLevelCount] = {1.0f, 1.0f, 1.0f, 1.0f, 1.08f, 1.0f};
// Multiplies the first layers' K factor (EncodeOptions::kFineFactor, 0.6): L4's first K layers at 0.8 (session 10).
constexpr float kLevelKFineScale[kLevelCount] = {1.0f, 1.0f, 1.0f, 1.0f, 0.8f / 0.6f, 1.0f};
// Content-key heads' step factor (EncodeOptions::contentFactor; a head counts as one above contentRatio, 1.3): the
// answer model's tail prompts under L4 came from the K of heads that vary mostly in their low-frequency RoPE pairs
// (three heads of layer 6 and one of layer 7 of 8; bench/RESULTS.md, KV codec session 10). A quarter step there, with
// K 0.88 / V 1.08 and the first K layers at 0.8, took L4 on 24 prompts from 8.4 to 3.5 mnat (seed 7; llama.cpp's q4_0
// cache 4.5) and 1.5 (seed 8; q4_0 2.0) at 6.16x; L5 from 104 to 18 mnat (seed 7) at 11.1x -> 10.3x.
constexpr float kLevelContentFactor[kLevelCount] = {1.0f, 1.0f, 1.0f, 1.0f, 0.25f, 0.25f};
float layerFactor(uint32_t layer, uint32_t nLayer, bool isK, const EncodeOptions& options);

// RoPE: cos, sin per (token, pair); rotateRow turns every head of a K row by its position's angles (sign -1: back to
// position 0).
void rotationTable(const RopeSpec& rope, uint32_t nTokens, std::vector<float>& cs);
void rotateRow(float* row, uint32_t C, const RopeSpec& rope, const float* cs, float sign);

// Little-endian bytes
inline void put16(std::vector<uint8_t>& out, uint16_t v) { out.push_back((uint8_t) v); out.push_back((uint8_t) (v >> 8)); }
inline void put32(std::vector<uint8_t>& out, uint32_t v) { for (int i = 0; i < 4; i++) out.push_back((uint8_t) (v >> (8 * i))); }
inline void put64(std::vector<uint8_t>& out, uint64_t v) { for (int i = 0; i < 8; i++) out.push_back((uint8_t) (v >> (8 * i))); }
inline void set32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t) (v >> (8 * i)); }
inline uint16_t get16(const uint8_t* p) { return (uint16_t) (p[0] | (p[1] << 8)); }
inline uint32_t get32(const uint8_t* p) { return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24); }
inline uint64_t get64(const uint8_t* p) { return (uint64_t) get32(p) | ((uint64_t) get32(p + 4) << 32); }

constexpr uint8_t kMagic[8] = {'W', 'E', 'F', 'T', 'K', 'V', 'Z', 0};
constexpr size_t kFixedHeader = 56;
constexpr size_t kLayerEntry = 32;
constexpr size_t kSectionFixed = 20;  // a section's fixed fields; then each state's stream length (u32)
constexpr size_t kMinSection = kSectionFixed + 8 * kFewStates;  // lengths and final states, no channel, no word
constexpr size_t kMaxSectionOverhead = kSectionFixed + 8 * kMaxStates;

inline Error fail(std::string& detail, Error error, const std::string& what) {
    detail = what;
    return error;
}

/** A channel's coding parameters as a section states them: its mean (in steps), step, and anchor and delta rows' table classes and raw-bit counts. */
struct SectionChannel {
    int32_t mean;
    float step;
    uint8_t anchorClass, deltaClass, anchorShift, deltaShift;
};

/** A section's fixed fields and where its streams lie, from the section's first byte; every size checked against the section's. */
struct SectionHead {
    uint32_t mode = 0, group = 0, S = 0;
    uint64_t ransBytes = 0, rawBytes = 0, escapes = 0;
    uint64_t streamOffset[kMaxStates] = {}, streamBytes[kMaxStates] = {};
    uint64_t rawOffset = 0, escapeOffset = 0;
    bool anchorShifts = false, deltaShifts = false;
};

/** Whether row t of a section is an anchor row (coded as itself, not as a delta). */
inline bool anchorRow(uint32_t mode, uint32_t group, uint32_t t) {
    return mode == 0 || (mode == 1 ? t == 0 : t % group == 0);
}

/**
 * Parses and checks a section of `size` bytes holding nTokens x C values (kv_codec_decode.cpp): its head, stream
 * lengths, base step, each channel's parameters and each rANS state's first value. Both decoders start here.
 */
Error parseSection(const uint8_t* p, size_t size, uint32_t nTokens, uint32_t C, SectionHead& head, std::vector<SectionChannel>& channels,
    std::string& detail);

/** A layer's K section's length from its own head (V takes the rest of the layer). */
Error sectionLength(const uint8_t* p, size_t size, uint32_t C, uint64_t& length, std::string& detail);

/** One tensor's section (kv_codec_encode.cpp); `modeChosen` is the grouping mode it took. */
void encodeTensor(const TensorIn& in, uint32_t nTokens, uint32_t layer, uint32_t nLayer, bool isK, const EncodeOptions& options,
    const float* rotation, std::vector<uint8_t>& out, uint32_t& modeChosen);

/** The container around encoded sections (kv_codec_format.cpp): sections[2 * il] is layer il's K, [2 * il + 1] its V. */
std::vector<uint8_t> writeContainer(uint32_t nTokens, const std::vector<LayerIn>& layers, const EncodeOptions& options,
    std::vector<std::vector<uint8_t>>& sections);

} // namespace weft_codec::detail
