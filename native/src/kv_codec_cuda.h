// The KV codec's GPU decoder (kv_codec_cuda.cu, built by nvcc into libweft_codec_cuda.so where a CUDA build runs):
// compressed bytes go to the device, and the entropy decoding, dequantization and K's rotation run there
// (kv_codec_parallel.h), so a disk hit moves its file's bytes over the bus rather than its f16 KV. Plain C, so the
// addon can load it with dlopen and the standalone check (native/tools/kv_codec_gpu_check.cpp) can link it.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

/** Where a decode's time went (ms, measured with CUDA events on the decode's stream). */
struct WeftCodecCudaTimes {
    float planMs;     // header and sections checked on the host, checksums included
    float uploadMs;   // the container, plans and rotation table to the device
    float kernelsMs;  // the six steps
};

/**
 * Decodes a whole container into device memory: layer il's K at kOut[il] (nTokens rows of nEmbdK f16), its V at
 * vOut[il] (rows of nEmbdV, or transposed as the file says). `fingerprint` (16 bytes, or null for any model) must
 * match the file's. One decode at a time per process (calls wait for each other); returns when the output is written.
 * Returns the codec's Error (0: none, as kv_codec.h numbers them) and writes its detail into `detail`.
 */
int weft_codec_cuda_decode(const uint8_t* data, size_t size, const uint8_t* fingerprint, uint16_t* const* kOut, uint16_t* const* vOut,
    uint32_t nLayer, char* detail, size_t detailBytes, WeftCodecCudaTimes* times);

}
