// A kernel-level trace of one process for the GPU benchmark (scripts/gpu-run.sh, WEFT_CUPTI=1): the device image has
// CUPTI (the CUDA toolkit's or pip's nvidia-cuda-cupti) but no Nsight Systems. Loaded by the CUDA driver as an
// injection library (CUDA_INJECTION64_PATH), it records every kernel, copy, memset and CUDA runtime call with CUPTI's
// timestamps and writes them as CSV lines to $WEFT_CUPTI_OUT.<pid>; scripts/cupti-summary.py reads them. Diagnostics
// only: nothing in Weft's product loads it.
//
// Lines: T,<CLOCK_MONOTONIC ns>,<CUPTI ns>          a clock pair (at start and at exit), to place host marks
//        K,<start>,<end>,<stream>,<correlation>,<name>   a kernel
//        M,<start>,<end>,<bytes>,<copy kind>,<correlation> a copy (kind: 1 HtoD, 2 DtoH, 8 DtoD, ...)
//        S,<start>,<end>,<bytes>                        a memset
//        R,<start>,<end>,<name>,<correlation>            a CUDA runtime API call (host side)
//
// Built on the device by gpu-run.sh, with KERNEL_T / MEMCPY_T / MEMSET_T set to the newest activity record types of
// the CUPTI headers found there.
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KERNEL_T
#define KERNEL_T CUpti_ActivityKernel9
#endif
#ifndef MEMCPY_T
#define MEMCPY_T CUpti_ActivityMemcpy5
#endif
#ifndef MEMSET_T
#define MEMSET_T CUpti_ActivityMemset4
#endif

static FILE *out = NULL;
static const size_t buffer_bytes = 32u << 20;

static void clock_pair(void) {
    struct timespec ts;
    uint64_t cupti_ns = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    cuptiGetTimestamp(&cupti_ns);
    fprintf(out, "T,%llu,%llu\n", (unsigned long long) ts.tv_sec * 1000000000ull + (unsigned long long) ts.tv_nsec,
            (unsigned long long) cupti_ns);
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *) aligned_alloc(8, buffer_bytes);
    *size = *buffer != NULL ? buffer_bytes : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void) ctx; (void) stream; (void) size;
    CUpti_Activity *record = NULL;
    while (out != NULL && cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
        switch (record->kind) {
            case CUPTI_ACTIVITY_KIND_KERNEL:
            case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
                const KERNEL_T *k = (const KERNEL_T *) record;
                fprintf(out, "K,%llu,%llu,%u,%u,%s\n", (unsigned long long) k->start, (unsigned long long) k->end,
                        k->streamId, k->correlationId, k->name != NULL ? k->name : "?");
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMCPY: {
                const MEMCPY_T *m = (const MEMCPY_T *) record;
                fprintf(out, "M,%llu,%llu,%llu,%u,%u\n", (unsigned long long) m->start, (unsigned long long) m->end,
                        (unsigned long long) m->bytes, (unsigned) m->copyKind, m->correlationId);
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMSET: {
                const MEMSET_T *m = (const MEMSET_T *) record;
                fprintf(out, "S,%llu,%llu,%llu\n", (unsigned long long) m->start, (unsigned long long) m->end,
                        (unsigned long long) m->bytes);
                break;
            }
            case CUPTI_ACTIVITY_KIND_RUNTIME: {
                const CUpti_ActivityAPI *a = (const CUpti_ActivityAPI *) record;
                const char *name = NULL;
                if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS || name == NULL) {
                    name = "?";
                }
                fprintf(out, "R,%llu,%llu,%s,%u\n", (unsigned long long) a->start, (unsigned long long) a->end, name,
                        a->correlationId);
                break;
            }
            default:
                break;
        }
    }
    free(buffer);
}

static void finish(void) {
    if (out == NULL) {
        return;
    }
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    clock_pair();
    fclose(out);
    out = NULL;
}

static int started = 0;

static void start(void) {
    const char *path = getenv("WEFT_CUPTI_OUT");
    if (started || path == NULL) {
        return;
    }
    started = 1;
    char name[4096];
    snprintf(name, sizeof name, "%s.%d", path, (int) getpid());
    out = fopen(name, "w");
    if (out == NULL) {
        return;
    }
    setvbuf(out, NULL, _IOFBF, 1 << 20);
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) {
        fprintf(out, "E,cuptiActivityRegisterCallbacks failed\n");
        return;
    }
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
    cuptiActivityFlushPeriod(500); // buffers reach the file while the process runs, not only at exit
    clock_pair();
    atexit(finish);
}

// The CUDA driver calls this when CUDA_INJECTION64_PATH names this library, before any CUDA work of the process.
int InitializeInjection(void) {
    start();
    return 1;
}
