// Finds the llama.cpp library node-llama-cpp loaded into this process and takes the functions from it:
// Linux: dl_iterate_phdr + dlopen(RTLD_NOLOAD) + dlsym; macOS: the dyld image list + dlopen(RTLD_NOLOAD) + dlsym;
// Windows: the process's module list + GetProcAddress. A handle's symbol lookup also searches its dependencies,
// so the ggml functions are found through libllama (or through llama-addon.node when llama.cpp is linked into it).
#include "llama_functions.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <stdexcept>

#if defined(_WIN32)
#include <windows.h>
#include <psapi.h>
#elif defined(__APPLE__)
#include <dlfcn.h>
#include <mach-o/dyld.h>
#else
#include <dlfcn.h>
#include <link.h>
#endif

namespace {

struct Candidate {
    std::string path;
    void* handle;
};

std::string lowerBaseName(const std::string& path) {
    size_t slash = path.find_last_of("/\\");
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    std::transform(base.begin(), base.end(), base.begin(), [](unsigned char c) { return (char) std::tolower(c); });
    return base;
}

// libllama first (it carries every llama_* and reaches ggml through its dependencies), then anything else
// named for llama (llama-addon.node of a static build, llama.dll).
int rank(const std::string& path) {
    std::string base = lowerBaseName(path);
    if (base.rfind("libllama.", 0) == 0 || base.rfind("llama.", 0) == 0)
        return 0;
    if (base.rfind("libllama", 0) == 0)
        return 1;
    if (base.find("llama-addon") != std::string::npos)
        return 2;
    return 3;
}

bool isCandidateName(const std::string& path) {
    return lowerBaseName(path).find("llama") != std::string::npos;
}

#if defined(_WIN32)
std::vector<Candidate> loadedCandidates() {
    std::vector<Candidate> found;
    HMODULE modules[1024];
    DWORD needed = 0;
    if (!K32EnumProcessModules(GetCurrentProcess(), modules, sizeof(modules), &needed))
        return found;
    size_t count = std::min<size_t>(needed / sizeof(HMODULE), sizeof(modules) / sizeof(HMODULE));
    for (size_t i = 0; i < count; i++) {
        char name[MAX_PATH * 2];
        DWORD length = GetModuleFileNameA(modules[i], name, sizeof(name));
        if (length == 0)
            continue;
        std::string path(name, length);
        if (isCandidateName(path))
            found.push_back({path, (void*) modules[i]});
    }
    return found;
}

void* findSymbol(void* handle, const char* name) {
    return (void*) GetProcAddress((HMODULE) handle, name);
}
#else
std::vector<std::string> loadedLibraryPaths() {
    std::vector<std::string> paths;
#if defined(__APPLE__)
    uint32_t count = _dyld_image_count();
    for (uint32_t i = 0; i < count; i++) {
        const char* name = _dyld_get_image_name(i);
        if (name != nullptr)
            paths.emplace_back(name);
    }
#else
    dl_iterate_phdr([](struct dl_phdr_info* info, size_t, void* data) -> int {
        if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0')
            static_cast<std::vector<std::string>*>(data)->emplace_back(info->dlpi_name);
        return 0;
    }, &paths);
#endif
    return paths;
}

std::vector<Candidate> loadedCandidates() {
    std::vector<Candidate> found;
    for (const std::string& path : loadedLibraryPaths()) {
        if (!isCandidateName(path))
            continue;
        // RTLD_NOLOAD: only a handle to what is already loaded (and a reference that keeps it loaded).
        void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
        if (handle != nullptr)
            found.push_back({path, handle});
    }
    return found;
}

void* findSymbol(void* handle, const char* name) {
    return dlsym(handle, name);
}
#endif

std::unique_ptr<LlamaFunctions> resolveFrom(const Candidate& candidate) {
    auto functions = std::make_unique<LlamaFunctions>();
    functions->library = candidate.path;
    functions->handle = candidate.handle;
#define WEFT_RESOLVE(name) \
    functions->name = reinterpret_cast<decltype(&::name)>(findSymbol(candidate.handle, #name)); \
    if (functions->name == nullptr) functions->missing.emplace_back(#name);
    WEFT_LLAMA_FUNCTIONS(WEFT_RESOLVE)
#undef WEFT_RESOLVE
    return functions;
}

std::mutex resolveMutex;
const LlamaFunctions* complete = nullptr;     // never freed: used until the process exits
std::unique_ptr<LlamaFunctions> lastAttempt;  // the best incomplete attempt, for diagnostics

} // namespace

const LlamaFunctions& getLlamaFunctions() {
    std::lock_guard<std::mutex> lock(resolveMutex);
    if (complete != nullptr)
        return *complete;

    std::vector<Candidate> candidates = loadedCandidates();
    std::stable_sort(candidates.begin(), candidates.end(),
        [](const Candidate& a, const Candidate& b) { return rank(a.path) < rank(b.path); });
#if !defined(_WIN32)
    // Last resort: symbols the process exports globally (a library loaded with RTLD_GLOBAL).
    candidates.push_back({"(global symbol scope)", RTLD_DEFAULT});
#endif

    std::unique_ptr<LlamaFunctions> best;
    for (const Candidate& candidate : candidates) {
        std::unique_ptr<LlamaFunctions> attempt = resolveFrom(candidate);
        if (attempt->missing.empty()) {
            complete = attempt.release();
            return *complete;
        }
        if (best == nullptr || attempt->missing.size() < best->missing.size())
            best = std::move(attempt);
    }

    if (best == nullptr) {
        best = std::make_unique<LlamaFunctions>();
#define WEFT_MISSING(name) best->missing.emplace_back(#name);
        WEFT_LLAMA_FUNCTIONS(WEFT_MISSING)
#undef WEFT_MISSING
    }
    lastAttempt = std::move(best);
    return *lastAttempt;
}

const LlamaFunctions& requireLlamaFunctions() {
    const LlamaFunctions& functions = getLlamaFunctions();
    if (!functions.missing.empty()) {
        std::string names;
        for (const std::string& name : functions.missing)
            names += (names.empty() ? "" : ", ") + name;
        throw std::runtime_error(
            "llama.cpp functions not found in this process (" + names + "): load a model with node-llama-cpp first" +
            (functions.library.empty() ? std::string() : " (best candidate library: " + functions.library + ")"));
    }
    return functions;
}

void* findOptionalLlamaFunction(const char* name) {
    const LlamaFunctions& functions = getLlamaFunctions();
    if (!functions.missing.empty() || functions.handle == nullptr)
        return nullptr;
    return findSymbol(functions.handle, name);
}

// The first GPU device's pinned host buffer type (null where no GPU backend is loaded): host memory the device copies
// to and from by DMA.
ggml_backend_buffer_type_t gpuHostBufferType(const LlamaFunctions& fns) {
    size_t count = fns.ggml_backend_dev_count();
    for (size_t i = 0; i < count; i++) {
        ggml_backend_dev_t dev = fns.ggml_backend_dev_get(i);
        if (dev == nullptr)
            continue;
        enum ggml_backend_dev_type type = fns.ggml_backend_dev_type(dev);
        if (type != GGML_BACKEND_DEVICE_TYPE_GPU && type != GGML_BACKEND_DEVICE_TYPE_IGPU)
            continue;
        ggml_backend_buffer_type_t host = fns.ggml_backend_dev_host_buffer_type(dev);
        if (host != nullptr)
            return host;
    }
    return nullptr;
}

