#include "kv_copy_graph.h"

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace {

// One backend instance per device, used only to queue copies on one stream and wait once. Kept for the process's
// life (a few KiB per device); null where the device cannot make one. Host memory of a buffer type without a device
// (ggml's plain CPU buffers) is copied by the CPU device's backend, so the CPU runs the same graphs a GPU does.
ggml_backend_t copyBackendOf(const LlamaFunctions& functions, ggml_backend_buffer_t buffer) {
    static std::mutex mutex;
    static std::map<ggml_backend_dev_t, ggml_backend_t> backends;
    ggml_backend_dev_t device = functions.ggml_backend_buft_get_device(functions.ggml_backend_buffer_get_type(buffer));
    if (device == nullptr && functions.ggml_backend_buffer_is_host(buffer))
        for (size_t d = 0; d < functions.ggml_backend_dev_count() && device == nullptr; d++)
            if (functions.ggml_backend_dev_type(functions.ggml_backend_dev_get(d)) == GGML_BACKEND_DEVICE_TYPE_CPU)
                device = functions.ggml_backend_dev_get(d);
    if (device == nullptr)
        return nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    auto found = backends.find(device);
    if (found == backends.end())
        found = backends.emplace(device, functions.ggml_backend_dev_init(device, nullptr)).first;
    return found->second;
}

// Held from queueing a placement's copies to waiting for them (QueuedCopies).
std::mutex& copyBackendsMutex() {
    static std::mutex mutex;
    return mutex;
}

// The widest element the rows are made of: the copy only moves bytes, and fewer, larger elements are cheaper where a
// backend copies element by element (ggml-cuda copies same-type 2-D views with cudaMemcpy2DAsync, the CPU row by row).
std::pair<ggml_type, size_t> elementOf(size_t width) {
    if (width % 4 == 0)
        return {GGML_TYPE_F32, 4};
    if (width % 2 == 0)
        return {GGML_TYPE_F16, 2};
    return {GGML_TYPE_I8, 1};
}

// `height` rows of `width` bytes at `data`, `pitch` bytes apart, in `buffer`: a tensor of the no-alloc context whose
// data and strides are set by hand (the memory belongs to the buffer).
ggml_tensor* rowsTensor(const LlamaFunctions& functions, ggml_context* ctx, ggml_backend_buffer_t buffer, const uint8_t* data,
        size_t pitch, size_t width, size_t height) {
    const auto [type, size] = elementOf(width);
    ggml_tensor* tensor = functions.ggml_new_tensor_2d(ctx, type, (int64_t) (width / size), (int64_t) height);
    tensor->buffer = buffer;
    tensor->data = const_cast<uint8_t*>(data);
    tensor->nb[1] = pitch;
    tensor->nb[2] = tensor->nb[3] = pitch * height;
    return tensor;
}

} // namespace

ggml_tensor byteView(ggml_backend_buffer_t buffer, void* data, size_t size) {
    ggml_tensor view{};
    view.type = GGML_TYPE_I8;
    view.buffer = buffer;
    view.data = data;
    view.ne[0] = (int64_t) size;
    view.ne[1] = view.ne[2] = view.ne[3] = 1;
    view.nb[0] = 1;
    view.nb[1] = view.nb[2] = view.nb[3] = size;
    return view;
}

std::vector<StridedCopy> mergeCopies(const std::vector<ByteCopy>& copies, size_t maxPitch) {
    std::vector<StridedCopy> runs;
    for (const ByteCopy& copy : copies) {
        if (copy.bytes == 0)
            continue;
        if (!runs.empty()) {
            StridedCopy& run = runs.back();
            const uintptr_t from = (uintptr_t) copy.from, to = (uintptr_t) copy.to;
            const uintptr_t runFrom = (uintptr_t) run.from, runTo = (uintptr_t) run.to;
            if (run.fromBuffer == copy.fromBuffer && run.toBuffer == copy.toBuffer && run.width == copy.bytes) {
                if (run.height == 1 && from > runFrom && to > runTo) {
                    const size_t fromPitch = from - runFrom, toPitch = to - runTo;
                    if (fromPitch >= run.width && toPitch >= run.width && fromPitch <= maxPitch && toPitch <= maxPitch) {
                        run.fromPitch = fromPitch;
                        run.toPitch = toPitch;
                        run.height = 2;
                        continue;
                    }
                } else if (run.height > 1 && from == runFrom + run.height * run.fromPitch && to == runTo + run.height * run.toPitch) {
                    run.height++;
                    continue;
                }
            }
        }
        StridedCopy run;
        run.fromBuffer = copy.fromBuffer;
        run.from = copy.from;
        run.fromPitch = copy.bytes;
        run.toBuffer = copy.toBuffer;
        run.to = copy.to;
        run.toPitch = copy.bytes;
        run.width = copy.bytes;
        run.height = 1;
        runs.push_back(run);
    }
    return runs;
}

QueuedCopies::QueuedCopies(QueuedCopies&& other) noexcept
    : count(other.count), functions(other.functions), backends(std::move(other.backends)), graphs(std::move(other.graphs)),
      lock(std::move(other.lock)) {
    other.backends.clear();
    other.graphs.clear();
}

void QueuedCopies::wait() {
    for (ggml_backend_t backend : backends)
        functions.ggml_backend_synchronize(backend);
    backends.clear();
    for (ggml_context* graph : graphs)
        functions.ggml_free(graph);
    graphs.clear();
    if (lock.owns_lock())
        lock.unlock();
}

QueuedCopies::~QueuedCopies() {
    wait();
}

QueuedCopies queueCopies(const LlamaFunctions& functions, const std::vector<StridedCopy>& copies) {
    QueuedCopies queued(functions);
    queued.lock = std::unique_lock<std::mutex>(copyBackendsMutex());
    std::vector<std::pair<ggml_backend_t, std::vector<const StridedCopy*>>> groups;
    std::vector<const StridedCopy*> direct;
    for (const StridedCopy& copy : copies) {
        ggml_backend_t backend = copyBackendOf(functions, copy.toBuffer);
        if (backend == nullptr) {
            direct.push_back(&copy);
            continue;
        }
        auto group = groups.begin();
        while (group != groups.end() && group->first != backend)
            ++group;
        if (group == groups.end())
            group = groups.insert(groups.end(), {backend, {}});
        group->second.push_back(&copy);
    }

    // Every graph first (nothing queued if one cannot be built), then every graph queued.
    std::vector<ggml_cgraph*> graphs;
    for (const auto& [backend, group] : groups) {
        // Each copy: its source and destination (leaves) and the copy node; the graph holds as many leaves.
        const size_t graphSize = 2 * group.size() + 1;
        ggml_init_params params{};
        params.mem_size = 3 * group.size() * functions.ggml_tensor_overhead() + functions.ggml_graph_overhead_custom(graphSize, false);
        params.mem_buffer = nullptr;
        params.no_alloc = true;
        ggml_context* ctx = functions.ggml_init(params);
        if (ctx == nullptr)
            throw std::runtime_error("could not make a ggml context for " + std::to_string(group.size()) + " KV copies");
        queued.graphs.push_back(ctx);
        ggml_cgraph* graph = functions.ggml_new_graph_custom(ctx, graphSize, false);
        for (const StridedCopy* copy : group) {
            ggml_tensor* from = rowsTensor(functions, ctx, copy->fromBuffer, copy->from, copy->fromPitch, copy->width, copy->height);
            ggml_tensor* to = rowsTensor(functions, ctx, copy->toBuffer, copy->to, copy->toPitch, copy->width, copy->height);
            ggml_tensor* node = functions.ggml_cpy(ctx, from, to);  // a view of `to`: its data and strides
            node->buffer = copy->toBuffer;
            functions.ggml_build_forward_expand(graph, node);
        }
        graphs.push_back(graph);
    }
    for (size_t g = 0; g < groups.size(); g++) {
        queued.backends.push_back(groups[g].first);
        const ggml_status status = functions.ggml_backend_graph_compute_async(groups[g].first, graphs[g]);
        if (status != GGML_STATUS_SUCCESS)
            throw std::runtime_error("the backend refused the KV copies' graph (status " + std::to_string((int) status) + ")");
        queued.count += groups[g].second.size();
    }
    for (const StridedCopy* copy : direct) {
        for (size_t row = 0; row < copy->height; row++) {
            ggml_tensor from = byteView(copy->fromBuffer, const_cast<uint8_t*>(copy->from) + row * copy->fromPitch, copy->width);
            ggml_tensor to = byteView(copy->toBuffer, copy->to + row * copy->toPitch, copy->width);
            functions.ggml_backend_tensor_copy(&from, &to);
        }
        queued.count += copy->height;
    }
    return queued;
}
