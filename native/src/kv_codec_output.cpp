// Memory for decoded KV bodies (kv_codec.h allocateOutput / freeOutput).
//
// A cold question decodes hundreds of MB, each byte written once, and fresh memory costs a page fault per page: on the
// 2-vCPU development machine, copying 240 MB into a fresh buffer took 170 ms and into a reused one 28 ms. So the
// memory of bodies JavaScript has let go (their ArrayBuffers' finalizers free them) is kept, up to kPoolBytes, and
// handed to the next decodes that fit it. Fresh buffers are plain malloc: asking for transparent huge pages
// (MADV_HUGEPAGE, as before) made the kernel compact memory on the first faults, and a cold question that found no
// kept buffers then loaded in 745 ms instead of 370 (32 layers, 8 chunks).
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kv_codec.h"

namespace weft_codec {

namespace {

// Enough for a cold question's chunks on a small model (eight 512-token chunks of a 32-layer, 512-wide model are
// 240 MB); an 8B model's 8k prompt decodes 1 GB, of which this much comes back warm.
constexpr size_t kPoolBytes = 512u << 20;

struct Pool {
    std::mutex mutex;
    std::unordered_map<void*, size_t> sizes;  // every live or kept buffer's size
    std::multimap<size_t, void*> kept;        // buffers no body uses, by size
    size_t keptBytes = 0;
};

Pool& pool() {
    static Pool* instance = new Pool();  // never destroyed: finalizers may free bodies while the process exits
    return *instance;
}

// Sizes rounded up to 2 MiB from 4 MiB on, so that chunks of slightly different lengths share buffers.
size_t sizeClass(size_t bytes) {
    constexpr size_t kRound = 2u << 20;
    return bytes >= 2 * kRound ? (bytes + kRound - 1) / kRound * kRound : (bytes == 0 ? 1 : bytes);
}

} // namespace

void* allocateOutput(size_t bytes) {
    const size_t size = sizeClass(bytes);
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        // The smallest kept buffer that holds it, if it wastes at most a quarter.
        auto it = p.kept.lower_bound(size);
        if (it != p.kept.end() && it->first - size <= size / 4) {
            void* reused = it->second;
            p.keptBytes -= it->first;
            p.kept.erase(it);
            return reused;
        }
    }
    void* fresh = std::malloc(size);
    if (fresh != nullptr) {
        std::lock_guard<std::mutex> lock(p.mutex);
        p.sizes[fresh] = size;
    }
    return fresh;
}

void freeOutput(void* output) {
    if (output == nullptr)
        return;
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        auto it = p.sizes.find(output);
        if (it == p.sizes.end())
            return;  // not ours: never happens; freeing it could be worse than keeping it
        if (p.keptBytes + it->second <= kPoolBytes) {
            p.kept.emplace(it->second, output);
            p.keptBytes += it->second;
            return;
        }
        p.sizes.erase(it);
    }
    std::free(output);
}

} // namespace weft_codec
