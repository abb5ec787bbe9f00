// f16 <-> f32 for the addon, exact (round to nearest even) as ggml's GGML_FP16_TO_FP32 / GGML_FP32_TO_FP16, with F16C
// row conversion where the CPU has it (checked at run time, so the addon still loads on CPUs without it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace weft_half {

inline float halfToFloat(uint16_t h) {
    uint32_t sign = (uint32_t) (h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {
            // subnormal: normalise
            exponent = 127 - 15 + 1;
            while ((mantissa & 0x400) == 0) {
                mantissa <<= 1;
                exponent--;
            }
            mantissa &= 0x3ff;
            bits = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 0x1f) {
        bits = sign | 0x7f800000 | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float out;
    std::memcpy(&out, &bits, sizeof(out));
    return out;
}

inline uint16_t floatToHalf(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    uint32_t sign = (bits >> 16) & 0x8000;
    uint32_t abs = bits & 0x7fffffff;
    if (abs > 0x7f800000)  // NaN: keep it a (quiet) NaN
        return (uint16_t) (sign | 0x7e00 | ((abs >> 13) & 0x3ff));
    if (abs >= 0x477ff000)  // rounds to >= 65520: infinity
        return (uint16_t) (sign | 0x7c00);
    if (abs < 0x38800000) {  // below the smallest normal half: a subnormal half or zero
        if (abs < 0x33000000)  // under half of the smallest subnormal: zero
            return (uint16_t) sign;
        const uint32_t exponent = abs >> 23;
        const uint32_t mantissa = (abs & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - exponent;  // value / 2^-24 = mantissa * 2^(exponent - 126)
        uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1)))
            half++;
        return (uint16_t) (sign | half);
    }
    uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);  // round to nearest even at bit 13
    return (uint16_t) (sign | ((rounded - 0x38000000) >> 13));
}

inline void halvesToFloatsScalar(const uint16_t* in, float* out, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = halfToFloat(in[i]);
}

inline void floatsToHalvesScalar(const float* in, uint16_t* out, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = floatToHalf(in[i]);
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx,f16c")))
inline void halvesToFloatsF16c(const uint16_t* in, float* out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
    for (; i < n; i++)
        out[i] = halfToFloat(in[i]);
}

__attribute__((target("avx,f16c")))
inline void floatsToHalvesF16c(const float* in, uint16_t* out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        out[i] = floatToHalf(in[i]);
}

// WEFT_NO_F16C=1 forces the scalar path, so the tests can check it on a machine that has F16C. F16C is read from
// CPUID (leaf 1, ECX) rather than __builtin_cpu_supports("f16c"), which clang 14 does not know (the fuzzer's build).
inline bool cpuHasF16c() {
    static const bool has = [] {
        unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
        return std::getenv("WEFT_NO_F16C") == nullptr && __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 &&
            (ecx & bit_F16C) != 0;
    }();
    return has;
}
#define WEFT_HAVE_F16C_DISPATCH 1
#endif

inline void halvesToFloats(const uint16_t* in, float* out, size_t n) {
#ifdef WEFT_HAVE_F16C_DISPATCH
    if (cpuHasF16c())
        return halvesToFloatsF16c(in, out, n);
#endif
    halvesToFloatsScalar(in, out, n);
}

inline void floatsToHalves(const float* in, uint16_t* out, size_t n) {
#ifdef WEFT_HAVE_F16C_DISPATCH
    if (cpuHasF16c())
        return floatsToHalvesF16c(in, out, n);
#endif
    floatsToHalvesScalar(in, out, n);
}

} // namespace weft_half

using weft_half::floatToHalf;
using weft_half::floatsToHalves;
using weft_half::halfToFloat;
using weft_half::halvesToFloats;
