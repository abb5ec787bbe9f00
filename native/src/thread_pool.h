// Work spread over a few threads for one call (the splice, the hkvd scoring): no pool outlives the call.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// Runs work(item, scratch) for every item in [0, count) on up to `threads` threads (the caller's included), each
// taking the next item and keeping its own scratch row; the first exception stops the rest and is rethrown.
template <typename Work>
void forEachOnThreads(size_t count, uint32_t threads, Work work) {
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::string failure;
    std::mutex failureMutex;
    auto run = [&]() {
        std::vector<float> scratch;
        try {
            for (size_t item = next++; item < count && !failed; item = next++)
                work(item, scratch);
        } catch (const std::exception& error) {
            std::lock_guard<std::mutex> lock(failureMutex);
            if (!failed)
                failure = error.what();
            failed = true;
        }
    };
    const uint32_t threadCount = (uint32_t) std::max<size_t>(1, std::min<size_t>(threads, count));
    std::vector<std::thread> pool;
    for (uint32_t t = 1; t < threadCount; t++)
        pool.emplace_back(run);
    run();
    for (std::thread& thread : pool)
        thread.join();
    if (failed)
        throw std::runtime_error(failure);
}
