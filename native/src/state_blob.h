// llama.cpp's in-memory sequence state (llama_state_seq_get_data / set_data): the magic it starts with
// (llama-context.cpp, io_magic), then the i32 source seq_id, then the memory module's body; and the ggml types of
// the K/V rows Weft reads and writes in it. main/engine/kv/kv-blob.ts holds the same constants for TypeScript.
#pragma once

#include <cstdint>

constexpr uint32_t stateBlobMagic = 0xaf143cd8;
constexpr int32_t typeF32 = 0;
constexpr int32_t typeF16 = 1;
