// Weft's KV codec (CacheGen-style): a chunk's per-layer f16 K and V, quantized per channel with a step set by the
// level, the layer and the channel's spread, then entropy coded with rANS under a table chosen per (layer, tensor,
// channel). Pure C++ (no N-API), so a fuzzer can link it alone; kv_codec_addon.cpp binds it.
//
// Container ("WEFTKVZ\0", little-endian; version 2):
//   0   magic[8]
//   8   u32 version, u32 level, u8 fingerprint[16], u32 nTokens, u32 nLayer, u32 flags (bit 0: V transposed, bit 1:
//       K coded un-rotated), u32 metaBytes, u64 payloadBytes
//   56  per layer: u32 nEmbdK, u32 nEmbdV, u64 offset (from the payload's start), u64 bytes, u32 crc32, u32 0
//       with flag bit 1: u32 rope kind (1 norm, 2 neox), u32 nRot, u32 headDim, i32 first position, f32 freqBase,
//       f32 freqScale, u32 nFactors (0 or nRot / 2), f32 factors[nFactors]
//       meta (opaque to the codec: the caller's key and tokens), u32 crc32 of everything before it
//   payload: per layer its K section then its V section, each:
//       u8 mode (0 direct, 1 delta to the previous token, 2 delta to the group's anchor token), u8 group, u16 S (rANS
//       states: 16, or 4 for a tensor under 4,096 values), u32 ransBytes, u32 rawBytes, u32 escapes, f32 base step,
//       u32 streamBytes[S] (adding up to ransBytes),
//       per channel: i16 mean (in steps), u8 step code (step = base * 2^((code - 128) / 8)), u8 class | shift << 5
//       [, u8 delta class | shift << 5 when mode != 0],
//       S rANS streams (value i of the tensor, token-major, is coded by state i % S; each stream is its state's final
//       u32 then its 16-bit words), raw low bits, escapes (i32 each)
// Version 1 (one stream shared by 4 states) is refused as wrong-version: independent streams let the decoder run 16
// states as two AVX2 vectors, or without a shared read pointer where it has no AVX2 (bench/RESULTS.md).
// A layer decodes from its own bytes alone (offsets and a checksum per layer), so layers can decode as they arrive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft_codec {

constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kLevelCount = 6;
constexpr uint32_t kDefaultLevel = 4;
constexpr uint32_t kMaxLayers = 4096;
constexpr uint32_t kMaxEmbd = 1u << 16;
constexpr uint32_t kMaxMetaBytes = 1u << 20;
constexpr uint32_t kMaxTokens = 1u << 22;

/** Element (t, c) of a tensor is `data[t * rowStride + c * colStride]` (f16 bits). */
struct TensorIn {
    const uint16_t* data;
    uint32_t channels;
    size_t rowStride;
    size_t colStride;
};

struct LayerIn {
    TensorIn k;
    TensorIn v;
};

/**
 * RoPE as llama.cpp applies it to K (no YaRN): cell t sits at firstPos + t. With kind != 0 the encoder un-rotates K
 * before coding (a channel then keeps its statistics from token to token) and the decoder rotates it back.
 */
struct RopeSpec {
    uint32_t kind = 0;  // 0 none, 1 norm (pairs 2i, 2i+1), 2 neox (pairs i, i + nRot/2)
    uint32_t nRot = 0, headDim = 0;
    int32_t firstPos = 0;
    float freqBase = 10000, freqScale = 1;
    std::vector<float> factors;
};

struct EncodeOptions {
    uint32_t level = kDefaultLevel;
    uint32_t threads = 1;
    uint8_t fingerprint[16] = {};
    bool vTrans = false;
    const uint8_t* meta = nullptr;
    uint32_t metaBytes = 0;
    /** Modes the encoder may pick from per tensor (bit i: mode i); it takes the cheapest. Default all. */
    uint32_t modeMask = 7;
    RopeSpec rope;
    /**
     * Tuning (the benchmark's experiments): exponent of the channel's own spread in its step (negative: the level's),
     * K and V step factors (on top of the level's).
     */
    float spreadExponent = -1.0f;
    float kStepFactor = 1.0f;
    float vStepFactor = 1.0f;
    /** The first layers' step factor and how many of every 32 layers (rounded up) take it, for K and for V. */
    float kFineFactor = 0.6f;
    float vFineFactor = 0.6f;
    uint32_t kFineLayers = 10;
    uint32_t vFineLayers = 2;
    /** How a channel's spread is measured: 0 its RMS deviation from its mean, 1 1.4826 x its median absolute deviation. */
    uint32_t spreadMode = 0;
    /** Experiment: K of the layers in this bit mask (layer i: bit i, i < 32) takes kMaskFactor on its step. */
    uint32_t kLayerMask = 0;
    float kMaskFactor = 1.0f;
    /**
     * Content-key heads (K coded un-rotated only, nRot >= 32): a head whose keys vary more in its low-frequency RoPE pairs (the
     * upper half of the pairs, and dims past nRot) than in its high-frequency ones, by an RMS ratio above
     * contentRatio, takes contentFactor on its steps (negative: the level's). Such heads match by content (a copy or
     * induction head), and their attention is sharp, so their keys' error moves the output most.
     */
    float contentFactor = -1.0f;
    float contentRatio = 1.3f;
};

struct EncodeStats {
    /** Tensors coded in each mode. */
    uint32_t modes[3] = {0, 0, 0};
};

std::vector<uint8_t> encode(uint32_t nTokens, const std::vector<LayerIn>& layers, const EncodeOptions& options, EncodeStats* stats = nullptr);

enum class Error {
    none = 0, truncated, badMagic, wrongVersion, badHeader, badSizes, wrongModel, wrongShape, checksum, corrupt
};

/** The reason string the TypeScript side types (KvCodecMissReason). */
const char* errorReason(Error error);

struct LayerInfo {
    uint32_t nEmbdK, nEmbdV;
    uint64_t offset, bytes;
    uint32_t crc;
};

struct Header {
    uint32_t version = 0, level = 0, nTokens = 0, nLayer = 0, flags = 0;
    uint8_t fingerprint[16] = {};
    const uint8_t* meta = nullptr;
    uint32_t metaBytes = 0;
    uint64_t headerBytes = 0, payloadBytes = 0;
    std::vector<LayerInfo> layers;
    RopeSpec rope;
    /** cos, sin per (token, pair) when K was coded un-rotated. */
    std::vector<float> rotation;
    bool vTrans() const { return (flags & 1) != 0; }
};

struct DecodeExpect {
    /** Null: any model. */
    const uint8_t* fingerprint = nullptr;
    uint32_t maxTokens = kMaxTokens;
    /** Empty: any shape within the format's limits; else nEmbdK, nEmbdV per layer. */
    std::vector<std::pair<uint32_t, uint32_t>> layers;
};

/**
 * Parses and checks the header against `expect` and the buffer's length (every layer's bytes inside it). Allocates
 * at most nLayer (checked <= kMaxLayers) entries. `detail` says what failed.
 */
Error parseHeader(const uint8_t* data, size_t size, const DecodeExpect& expect, Header& header, std::string& detail);

/** Where layer il's output goes: element (t, c) at `k[t * nEmbdK + c]`, V likewise or transposed `v[c * nTokens + t]`. */
struct LayerOut {
    uint16_t* k;
    uint16_t* v;
};

/** Decodes one layer (its checksum first) from the whole container's bytes. */
Error decodeLayer(const uint8_t* data, size_t size, const Header& header, uint32_t layer, const LayerOut& out, std::string& detail);

/**
 * Memory for decoded KV (release it with freeOutput; kv_codec_output.cpp). A decode writes its output once, so a fresh
 * buffer costs a page fault per page, more than the decode's own writes: released buffers are kept (up to a bound)
 * for the next decodes. Null when out of memory. The memory may hold an earlier body's bytes: the decoder writes
 * every byte.
 */
void* allocateOutput(size_t bytes);
void freeOutput(void* output);

/** Decodes every layer on up to `threads` threads; the first error wins. */
Error decodeAll(const uint8_t* data, size_t size, const Header& header, const std::vector<LayerOut>& out, uint32_t threads, std::string& detail);

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

} // namespace weft_codec
