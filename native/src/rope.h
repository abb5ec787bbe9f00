// Re-positioning cached K rows by a position delta, as llama.cpp's K-shift does after llama_memory_seq_add
// (ggml_rope_ext with the delta as the position): K is stored after RoPE, and a rotation by θ·p then by θ·d equals one
// by θ·(p + d). The parameters come from main/engine/kv/rope-params.ts (which refuses what cannot be reproduced);
// test/helpers/kv-reference.ts holds the TypeScript reference this is checked against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <napi.h>

enum class RopeKind : int32_t { None = 0, Norm = 1, Neox = 2 };

struct RopeSpec {
    RopeKind kind = RopeKind::None;
    int32_t nRot = 0;
    int32_t headDim = 0;
    float freqBase = 10000.0f;
    float freqScale = 1.0f;
    std::vector<float> freqFactors;  // empty: none
};

/** cos/sin of the rotation by `delta`, as ggml_rope_cache_init computes them (ext_factor 0, attn_factor 1). */
std::vector<float> ropeCache(int32_t delta, const RopeSpec& rope);

/** Rotates the first nRot dimensions of each of `heads` heads of one f32 row in place. */
void rotateRow(float* row, int32_t heads, const RopeSpec& rope, const float* cache);

/**
 * One K row of `elems` f16 or f32 elements, rotated by `cache`, from `in` to `out` (which may be the same memory);
 * `row` is the caller's scratch. An f16 row is rounded back to f16, as the cache will hold it.
 */
void rotateKRow(const uint8_t* in, uint8_t* out, size_t elems, bool f16, const RopeSpec& rope, const float* cache, std::vector<float>& row);

/** spec.rope ({kind, nRot, headDim, freqBase, freqScale, freqFactors}) of a JS spec object. */
RopeSpec readRopeSpec(Napi::Env env, const Napi::Object& spec);
