#include "stack_dump.h"

#if defined(__linux__)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

void printStack(int) {
    // backtrace() is not formally async-signal-safe; it was called once at install so that libgcc is already loaded,
    // which is what makes it safe in practice. The output is for a person reading a stuck run's log.
    void* frames[48];
    const int count = backtrace(frames, 48);
    char header[96];
    const int length = snprintf(header, sizeof header, "--- native stack of thread %ld ---\n", (long) syscall(SYS_gettid));
    if (length > 0)
        (void) !write(STDERR_FILENO, header, (size_t) length);
    backtrace_symbols_fd(frames, count, STDERR_FILENO);
}

} // namespace

void installStackDumper() {
    void* warm[2];
    backtrace(warm, 2);
    struct sigaction action {};
    action.sa_handler = printStack;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, nullptr);
}
#else
void installStackDumper() {}
#endif
