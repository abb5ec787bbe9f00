#!/usr/bin/env bash
# Weft's one-call GPU benchmark: run on the lent GPU machine from the repository root, after scripts/gpu-pack.sh has
# filled .device/ here:
#
#   device run, kind nvidia-h100-x1 (or none), carry [".device"], timeout_s 600, command: bash scripts/gpu-run.sh
#
# In one command (the device allows 10 minutes): unpacks Node, npm, Node's headers, node_modules and the llama.cpp
# source from .device/pack; applies node-llama-cpp's and Weft's patches and builds llama.cpp for CUDA (arch 90) through
# scripts/build-llama.mjs; builds the native addon's debug target (scripts/build-native.mjs --debug, with the SIGUSR2
# stack dumper; or g++ directly if node-gyp fails); writes a random-weight f16 llama GGUF (test/fixtures/make-tiny-models.ts)
# in parallel with the build; then runs bench/ttft-gpu.ts, which times TTFT of full / naive / chunk-head / hkvd (ratio
# 0.15) at 2k and 8k tokens and prints a Markdown table. Results and logs go to
# $OUT (gpu-run.log, ttft.md, ttft.jsonl, build logs).
#
# Environment (defaults are the GPU run's): WEFT_GPU (cuda; "false" for a CPU dry run of the whole flow),
# WEFT_CUDA_ARCH (90-real: Hopper's machine code without PTX, a smaller build to carry back), WEFT_SIZES (2048,8192), WEFT_REPS (3), WEFT_RATIO (0.15), WEFT_CHUNK (512 tokens per chunk),
# WEFT_SHAPE ("layers embd heads kvHeads ff": 16 2048 16 8 5632), WEFT_BUDGET_S (570: no new benchmark run starts
# after this many seconds from the script's start), WEFT_WORK (/tmp/weft-gpu), WEFT_GPU_REUSE (1: on a warm machine
# whose previous call of this script built everything, keep node_modules, the CUDA build and the model, and only
# rebuild the native addon; minutes saved), WEFT_TRACE (1: --trace, log each step of each run, to find a hang), WEFT_STALL_S
# (25: a run whose log stops growing this long is stuck: stacks, then stopped), WEFT_VARIANTS (the main run's
# strategies; default bench/ttft-gpu.ts's: full,naive-pageable,naive,naive-resident,chunk-head,chunk-head-resident,hkvd,
# hkvd-resident,hkvd0-resident: hkvd is the fused decode of patch 0003, hkvd0 its selection's share; not in the default:
# naive-cold, chunk-head-cold, hkvd-cold, hkvd0-cold, each also as -cold-l<level>: chunk KVs from the disk tier in the KV
# codec's container at --cold-level (the codec's default, 4) or <level> (the engine's disk tier stores 2), page cache
# evicted before each run, the controller planning disk or recompute for the question's chunks; a second table gives its
# choices per run, bytes read and the ratio to the same strategy's warm row), WEFT_PROBE (1: short
# 8k runs that each change one thing), WEFT_BATCH_PROBE (N[,M]: a further run at each batch size), WEFT_NSYS (1: an Nsight Systems
# profile of hkvd0 at 8k, per-kernel and per-API sums as CSV), WEFT_CUPTI (1: a CUPTI kernel trace instead, summarized per run),
# WEFT_COLD_VARIANTS (a run of these variants at 8k), WEFT_MASK_PROBE (N: the full prefill at batch N with the host-filled
# mask, against patch 0008's in-graph one in the batch probe), WEFT_SAVE_BUILD (1: the CUDA build comes back in parts
# for .device/build/, which later calls use instead of building when made from the same patches), WEFT_CODEC_GPU (1: first,
# scripts/gpu-codec-check.sh, the KV codec's GPU decoder against the host decoder, about 30 s, into gpu-codec-check.txt).
# Logs beyond gpu-run.log and the main table come back in logs.tar.gz.
set -uo pipefail

start=$(date +%s)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/.device/out}"
mkdir -p "$OUT"
export OUT
if [ -z "${WEFT_GPU_RUN_TEED:-}" ]; then # everything also goes to $OUT/gpu-run.log
    WEFT_GPU_RUN_TEED=1 bash "${BASH_SOURCE[0]}" "$@" 2>&1 | tee "$OUT/gpu-run.log"
    exit "${PIPESTATUS[0]}"
fi
gpu="${WEFT_GPU:-cuda}"
arch="${WEFT_CUDA_ARCH:-90-real}"
sizes="${WEFT_SIZES:-2048,8192}"
reps="${WEFT_REPS:-3}"
ratio="${WEFT_RATIO:-0.15}"
chunk="${WEFT_CHUNK:-512}"
read -r layers embd heads kvheads ff <<<"${WEFT_SHAPE:-16 2048 16 8 5632}"
budget="${WEFT_BUDGET_S:-570}"
work="${WEFT_WORK:-/tmp/weft-gpu}"
pack="$root/.device/pack"
nlc="$root/node_modules/node-llama-cpp"

say() { echo "[gpu-run $(($(date +%s) - start))s] $*"; }
die() { say "FAILED: $*"; exit 1; }
unxz_to() { # unxz_to FILE.xz -> stdout; xz when present, else Python's lzma
    if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

[ -f "$pack/node.xz" ] || die ".device/pack is missing: run scripts/gpu-pack.sh here and carry .device"
card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
card="${card:-no GPU (nvidia-smi failed)}"
say "card: $card; gpu=$gpu arch=$arch sizes=$sizes reps=$reps ratio=$ratio shape=$layers x $embd h$heads/$kvheads ff$ff; $(nproc) cores"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
for tool in git make g++ cmake nvcc python3 xz ninja; do
    if command -v "$tool" >/dev/null; then version="$("$tool" --version 2>&1 | head -1)"; else version=MISSING; fi
    printf '  %-8s %s\n' "$tool" "$version"
done
command -v git >/dev/null || die "git is missing (scripts/build-llama.mjs applies patches with git apply)"
if [ "${WEFT_CODEC_GPU:-0}" = 1 ]; then
    say "the KV codec's GPU decoder (scripts/gpu-codec-check.sh)"
    bash scripts/gpu-codec-check.sh || say "gpu-codec-check.sh exited $? (the benchmark goes on)"
fi

reuse=0
if [ "${WEFT_GPU_REUSE:-0}" = 1 ] && [ -f node_modules/.weft-gpu-pack ] && [ -f "$nlc/llama/weft-patches.json" ] &&
    [ -x "$work/nodedist/bin/node" ] && [ -f "$work/model.gguf" ]; then
    reuse=1
    export PATH="$work/nodedist/bin:$PATH"
    export npm_config_nodedir="$work/nodedist" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
    say "reusing the previous call's node_modules, CUDA build and model"
fi

if [ $reuse = 0 ]; then
# ---- unpack: Node (+ headers and npm laid out as a Node dist), node_modules, the llama.cpp source
rm -rf "$work"
mkdir -p "$work/nodedist/bin" "$work/nodedist/lib/node_modules" "$work/fixtures/llama.cpp"
unxz_to "$pack/node.xz" >"$work/nodedist/bin/node" && chmod +x "$work/nodedist/bin/node" || die "unpacking node"
unxz_to "$pack/nodedist-include.tar.xz" | tar -C "$work/nodedist" --no-same-owner -xf - || die "unpacking Node's headers"
unxz_to "$pack/npm.tar.xz" | tar -C "$work/nodedist/lib/node_modules" --no-same-owner -xf - || die "unpacking npm"
printf '#!/bin/sh\nexec "%s/nodedist/bin/node" "%s/nodedist/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$work" "$work" >"$work/nodedist/bin/npm"
printf '#!/bin/sh\nexec "%s/nodedist/bin/node" "%s/nodedist/lib/node_modules/npm/bin/npx-cli.js" "$@"\n' "$work" "$work" >"$work/nodedist/bin/npx"
chmod +x "$work/nodedist/bin/npm" "$work/nodedist/bin/npx"
export PATH="$work/nodedist/bin:$PATH"
export npm_config_nodedir="$work/nodedist" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# Replace only a node_modules this script unpacked (a warm machine's second call), never a developer's.
if [ -e node_modules ] && [ ! -f node_modules/.weft-gpu-pack ]; then
    die "node_modules exists and was not unpacked by this script: run this on the device (or a copy of the checkout)"
fi
rm -rf node_modules
unxz_to "$pack/node_modules.tar.xz" | tar --no-same-owner -xf - || die "unpacking node_modules"
unxz_to "$pack/llama.cpp.tar.xz" | tar -C "$nlc/llama" --no-same-owner -xf - || die "unpacking the llama.cpp source"
# node-llama-cpp treats the source as present when llama/llama.cpp/.git and llama/llama.cpp.info.json exist.
git -C "$nlc/llama/llama.cpp" init -q || die "git init in the llama.cpp source"
touch node_modules/.weft-gpu-pack
say "unpacked: node $(node --version), npm $(npm --version 2>/dev/null), $(ls node_modules | wc -l) packages"

# ---- the model, in the background
commit="$(git bundle list-heads "$pack/bundle-head.bundle" | awk '$2 == "HEAD" { print $1 }')"
cp "$pack/ggml-vocab-llama-spm.gguf" "$work/fixtures/llama.cpp/ggml-vocab-llama-spm.${commit:0:12}.gguf"
mkdir -p .device/run
cat >.device/run/make-model.ts <<'TS'
import os from "node:os";
import {makeTinyLlama} from "../../test/fixtures/make-tiny-models.js";
const [outPath, layers, embd, heads, kvHeads, ff] = process.argv.slice(2);
const started = performance.now();
const result = await makeTinyLlama({vocab: "llama-spm", layers: Number(layers), embd: Number(embd), heads: Number(heads),
    kvHeads: Number(kvHeads), ff: Number(ff), contextLength: 32768, weightType: "f16", seed: 1, outPath: outPath!,
    workers: Number(process.env.WEFT_MODEL_WORKERS ?? "1")});
console.log(`model: ${(result.bytes / 2 ** 30).toFixed(2)} GiB written in ${((performance.now() - started) / 1000).toFixed(1)} s: ${result.path}`);
TS
model="$work/model.gguf"
fi
model="$work/model.gguf"
# Its weights are written by worker threads: all cores when a carried build spares the compile (.device/build), else two.
model_workers=2
[ -f .device/build/llama-build.manifest ] && model_workers=$(nproc)
[ $reuse = 1 ] || (WEFT_MODEL_WORKERS=$model_workers WEFT_LLAMA_BUNDLE="$pack/bundle-head.bundle" WEFT_FIXTURE_CACHE="$work/fixtures" \
    node --import tsx .device/run/make-model.ts "$model" "$layers" "$embd" "$heads" "$kvheads" "$ff" >"$OUT/model.log" 2>&1) &
model_pid=$!
[ $reuse = 1 ] && model_pid=

# ---- the native addon, in the background (headers only; seconds)
(
    if node scripts/build-native.mjs --strict --force --debug; then exit 0; fi
    echo "node-gyp build failed; compiling the addon with g++ directly"
    mkdir -p native/build/Release
    g++ -shared -fPIC -O2 -std=c++17 -fexceptions -fvisibility=hidden -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DBUILDING_NODE_EXTENSION -DWEFT_DEBUG_DIAGNOSTICS \
        -I"$work/nodedist/include/node" -I"$root/node_modules/node-addon-api" -I"$nlc/llama/addon" \
        -I"$nlc/llama/llama.cpp/include" -I"$nlc/llama/llama.cpp/ggml/include" \
        native/src/*.cpp -o native/build/Release/weft_native.node -ldl
) >"$OUT/native.log" 2>&1 &
native_pid=$!

# ---- llama.cpp with Weft's patches
# A build that came back from an earlier call (WEFT_SAVE_BUILD=1, copied here into .device/build/) is used instead of
# building when it was made from the same patches, node-llama-cpp, backend and CUDA arch: minutes of device time saved.
build_manifest() {
    echo "node-llama-cpp $(node -p 'require("./node_modules/node-llama-cpp/package.json").version') gpu=$gpu arch=$arch"
    (cd native/patches && sha256sum *.diff)
}
saved_build=0
if [ $reuse = 0 ] && [ -f .device/build/llama-build.manifest ] && ls .device/build/llama-build.tar.xz.* >/dev/null 2>&1; then
    if [ "$(build_manifest)" = "$(sed '/^--- parts$/,$d' .device/build/llama-build.manifest)" ] &&
        (cd .device/build && sed '1,/^--- parts$/d' llama-build.manifest | sha256sum --quiet -c -) &&
        cat .device/build/llama-build.tar.xz.* | unxz_to /dev/stdin | tar -C "$nlc/llama" --no-same-owner -xf -; then
        saved_build=1
        say "llama.cpp: using the build carried in .device/build ($(du -sh .device/build | cut -f1)), made from these patches"
    else
        say "llama.cpp: the build in .device/build was made from other patches or is damaged: building"
    fi
fi
if [ $reuse = 0 ] && [ $saved_build = 0 ]; then
say "building llama.cpp (gpu=$gpu) with Weft's patches"
if [ "$gpu" = cuda ]; then export NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES="$arch"; fi
node scripts/build-llama.mjs --gpu "$gpu" >"$OUT/build-llama.log" 2>&1
build_rc=$?
grep -E "patch|patched build|done in|failed|error" "$OUT/build-llama.log" | grep -v "^-- " | tail -20
[ $build_rc -eq 0 ] || { tail -40 "$OUT/build-llama.log"; die "scripts/build-llama.mjs --gpu $gpu exited $build_rc (log: build-llama.log)"; }
say "llama.cpp built"
# WEFT_SAVE_BUILD=1: the build's binaries come back (xz, in 15 MiB parts, with a manifest: what they were built from and
# each part's sha256; at most 3 parts, as a call returns 8 files) for a later call to carry
# in .device/build/. pax keeps buildDone.status's mtime exact: weft-patches.json records it as the build's stamp.
if [ "${WEFT_SAVE_BUILD:-0}" = 1 ]; then
    folder="$(cd "$nlc/llama/localBuilds" && ls -t | head -1)"
    mkdir -p "$work/build-out"
    tar -C "$nlc/llama" --format=posix -cf - "localBuilds/$folder/Release" "localBuilds/$folder/buildDone.status" weft-patches.json \
        $(cd "$nlc/llama" && ls lastBuild.json 2>/dev/null) | xz -T0 -6 | split -b 15M - "$work/build-out/llama-build.tar.xz."
    (build_manifest; echo "--- parts"; cd "$work/build-out" && sha256sum llama-build.tar.xz.*) >"$work/build-out/llama-build.manifest"
    parts=$(ls "$work/build-out"/llama-build.tar.xz.* | wc -l)
    say "saved build: $(du -sh "$work/build-out" | cut -f1) in $parts parts (localBuilds/$folder)"
    if [ "$parts" -le 3 ]; then cp "$work/build-out"/* "$OUT/"; else say "saved build: too large to come back"; fi
fi
fi
wait $native_pid; native_rc=$?
tail -3 "$OUT/native.log"
[ -f native/build/Release/weft_native.node ] || { cat "$OUT/native.log"; die "the native addon was not built (log: native.log)"; }
model_rc=0
if [ -n "$model_pid" ]; then wait $model_pid; model_rc=$?; cat "$OUT/model.log"; fi
[ $model_rc -eq 0 ] && [ -f "$model" ] || die "writing the model failed (log: model.log)"
say "native addon (rc $native_rc) and model ready"

# ---- the benchmark
deadline=$(( (start + budget) * 1000 ))
stall="${WEFT_STALL_S:-25}"
say "benchmark: $((start + budget - $(date +%s))) s left before no new run starts"
rm -f "$OUT"/ttft*.jsonl

# Native stacks of a stuck run: every thread is sent SIGUSR2, which the addon (debug build) answers by
# printing that thread's stack to the run's stderr; the threads that were running (state R) are printed here,
# symbolized with addr2line where the frame is an offset into a library; all of them stay in the progress log.
dump_stacks() { # dump_stacks PID PROGRESS_LOG
    python3 - "$1" "$2" <<'PY'
import ctypes, os, re, shutil, subprocess, sys, time
pid, log = int(sys.argv[1]), sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
running = []
for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        state = stat[stat.rindex(")") + 2]
        if state == "R" or tid == str(pid):
            running.append(tid)
        libc.syscall(234, pid, int(tid), 12)  # tgkill(pid, tid, SIGUSR2); one at a time, so the stacks do not interleave
        time.sleep(0.2)
    except (OSError, ValueError):
        pass
time.sleep(1)
text = open(log, errors="replace").read()
addr2line = shutil.which("addr2line")
for block in re.split(r"(?=--- native stack of thread )", text)[1:]:
    head = block.split("\n", 1)[0]
    tid = head.split()[-2]
    if tid not in running:
        continue
    print(f"  {head} ({'main' if tid == str(pid) else 'running'})")
    for line in block.split("\n")[1:]:
        m = re.match(r"(\S+?)\(([^)]*)\)\[(0x[0-9a-f]+)\]", line)
        if not m:
            if re.fullmatch(r"\[0x[0-9a-f]+\]", line):
                print("    (code without a symbol: JavaScript or JIT)")
                continue
            break
        lib, sym, _ = m.groups()
        where = sym
        off = re.fullmatch(r"\+(0x[0-9a-f]+)", sym)
        if off and addr2line and os.path.exists(lib):
            out = subprocess.run([addr2line, "-f", "-C", "-e", lib, off.group(1)], capture_output=True, text=True).stdout.split("\n")
            where = f"{out[0]} {os.path.basename(out[1]) if len(out) > 1 else ''}".strip()
        elif sym and "+" in sym:
            name = sym.split("+")[0]
            where = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name if shutil.which("c++filt") else name
        print(f"    {os.path.basename(lib)}: {where[:160]}")
PY
}

# run_bench LABEL [VAR=VALUE ...] -- RUNNER-ARGS...: one run of the runner; a run whose progress log stops growing for
# WEFT_STALL_S seconds, or that outlives the budget by 20 s, is stuck: its thread states, the GPU's utilization and the
# running threads' native stacks are printed, then it is stopped, so the table and logs still come back.
run_bench() {
    local label="$1"; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local progress="$OUT/ttft-progress-$label.log"
    say "run $label: ${envs[*]:-(no extra environment)} $*"
    env ${envs[@]+"${envs[@]}"} node --import tsx bench/ttft-gpu.ts --model "$model" --gpu "$gpu" \
        --reps "$reps" --ratio "$ratio" --chunk "$chunk" --threads "$(nproc)" --card "$card" --deadline "$deadline" \
        --out "$OUT/ttft-$label" ${WEFT_TRACE:+--trace} "$@" 2>"$progress" &
    local pid=$! size=-1 grown now
    grown=$(date +%s)
    while kill -0 $pid 2>/dev/null; do
        now=$(date +%s)
        if [ "$(stat -c %s "$progress")" != "$size" ]; then size=$(stat -c %s "$progress"); grown=$now; fi
        if [ $((now - grown)) -gt "$stall" ] || [ $((now - start)) -gt $((budget + 20)) ]; then
            say "run $label: no progress for $((now - grown)) s; last step: $(grep -v '^---\|^/\|^node\|^\s' "$progress" | tail -1)"
            for task in /proc/$pid/task/*; do echo "$(cat "$task/comm" 2>/dev/null) $(cat "$task/wchan" 2>/dev/null)"; done | sort | uniq -c | sed 's/^/  threads: /'
            nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | sed 's/^/  GPU utilization, memory: /'
            dump_stacks $pid "$progress"
            kill -9 $pid
            break
        fi
        sleep 1
    done
    wait $pid
    local rc=$?
    grep -v " rep \| warm-up\|^---\|^/\|^node\|^\s\|^\[0x" "$progress" || true
    [ -f "$OUT/ttft-$label.md" ] && cat "$OUT/ttft-$label.md"
    say "run $label exited $rc"
    return $rc
}

# WEFT_CHECK=1 (default): after the first size, the logits of full and hkvd (1.0 and --ratio, resident, runs compared).
run_bench main -- --sizes "$sizes" ${WEFT_VARIANTS:+--variants "$WEFT_VARIANTS"} $([ "${WEFT_CHECK:-1}" = 1 ] && echo --check)
bench_rc=$?
# WEFT_COLD_VARIANTS=V,...: a run at 8k of these variants (issue #13's cold rows, e.g. naive,naive-cold,naive-cold-l2),
# apart from the main run so that its sizes stay the blend's.
if [ -n "${WEFT_COLD_VARIANTS:-}" ]; then
    run_bench cold -- --sizes 8192 --variants "$WEFT_COLD_VARIANTS"
fi
# WEFT_PROBE=1: after the main run, short 8k runs that each change one thing, to find what a hang depends on.
if [ "${WEFT_PROBE:-0}" = 1 ]; then
    run_bench probe-naive-only -- --sizes 8192 --variants naive
    run_bench probe-graphs-off GGML_CUDA_DISABLE_GRAPHS=1 -- --sizes 8192 --variants naive-pageable,naive
    run_bench probe-launch-blocking CUDA_LAUNCH_BLOCKING=1 -- --sizes 8192 --variants naive-pageable
fi
# WEFT_CUPTI=1: a kernel-level trace (scripts/cupti-trace.c, an injection library on the machine's CUPTI; there is no
# nsys) of one rep of WEFT_CUPTI_VARIANTS at WEFT_CUPTI_SIZES (8192) and batch WEFT_CUPTI_BATCH, summarized per run by
# scripts/cupti-summary.py.
if [ "${WEFT_CUPTI:-0}" = 1 ] && [ $(($(date +%s) - start)) -ge "$budget" ]; then
    say "cupti: skipped, past the budget"
elif [ "${WEFT_CUPTI:-0}" = 1 ]; then
    sites="$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)"
    cupti_h="$(find /usr/local/cuda/extras/CUPTI /usr/local/cuda/targets /usr/local/cuda*/ $sites -name cupti.h 2>/dev/null | head -1)"
    cupti_so="$(find "$(dirname "$(dirname "$cupti_h")")" /usr/local/cuda*/ $sites -name 'libcupti.so*' 2>/dev/null | head -1)"
    say "cupti: header $cupti_h, library $cupti_so"
    built=0
    if [ -n "$cupti_h" ] && [ -n "$cupti_so" ]; then
        inc="$(dirname "$cupti_h")"
        ln -sf "$cupti_so" "$work/libcupti.so"
        for kt in $(grep -oh 'CUpti_ActivityKernel[0-9]*\b' "$inc"/*.h | sort -uV -r); do
            mt="$(grep -oh 'CUpti_ActivityMemcpy[0-9]*\b' "$inc"/*.h | sort -uV | tail -1)"
            st="$(grep -oh 'CUpti_ActivityMemset[0-9]*\b' "$inc"/*.h | sort -uV | tail -1)"
            if gcc -shared -fPIC -O2 -DKERNEL_T="$kt" -DMEMCPY_T="$mt" -DMEMSET_T="$st" -I"$inc" -I/usr/local/cuda/include \
                scripts/cupti-trace.c -o "$work/libcupti-trace.so" -L"$work" -lcupti -Wl,-rpath,"$(dirname "$cupti_so")" \
                >"$OUT/cupti-build.log" 2>&1; then
                say "cupti: tracer built with $kt, $mt, $st"; built=1; break
            fi
        done
    fi
    if [ $built = 1 ]; then
        rm -f "$work"/cupti.csv.*
        run_bench cupti CUDA_INJECTION64_PATH="$work/libcupti-trace.so" WEFT_CUPTI_OUT="$work/cupti.csv" -- --sizes "${WEFT_CUPTI_SIZES:-8192}" --reps 1 \
            --trace --batch "${WEFT_CUPTI_BATCH:-2048}" --variants "${WEFT_CUPTI_VARIANTS:-full,naive-resident,hkvd0-resident,hkvd-resident}"
        trace_file="$(ls -S "$work"/cupti.csv.* 2>/dev/null | head -1)"
        if [ -n "$trace_file" ]; then
            python3 scripts/cupti-summary.py "$trace_file" "$OUT/ttft-progress-cupti.log" >"$OUT/cupti-summary.txt" 2>&1
            cat "$OUT/cupti-summary.txt"
            xz -T0 -6 -c "$trace_file" >"$OUT/cupti-trace.csv.xz"
        else
            say "cupti: no trace file was written"
        fi
    else
        say "cupti: no tracer (see cupti-build.log)"; tail -5 "$OUT/cupti-build.log" 2>/dev/null
    fi
fi
# WEFT_BATCH_PROBE=N[,M...]: a further run at each batch (and ubatch) size N: fewer, larger fused decodes, to weigh the per-decode cost.
batch_probes="${WEFT_BATCH_PROBE:-}"
for probe_batch in ${batch_probes//,/ }; do
    run_bench "batch$probe_batch" -- --sizes "$sizes" --batch "$probe_batch" --variants "${WEFT_BATCH_VARIANTS:-full,hkvd-resident,hkvd0-resident}"
done
# WEFT_MASK_PROBE=N[,M...]: at each batch N, the full prefill with the stock host-filled mask against patch 0008's in-graph one.
mask_probes="${WEFT_MASK_PROBE:-}"
for probe_batch in ${mask_probes//,/ }; do
    run_bench "mask-host$probe_batch" -- --sizes "$sizes" --batch "$probe_batch" --decode-mask host --variants full
done
# WEFT_NSYS=1: an Nsight Systems profile of hkvd's fused decode at 8k (one rep), summarized per kernel and per CUDA API call.
if [ "${WEFT_NSYS:-0}" = 1 ] && [ $(($(date +%s) - start)) -ge "$budget" ]; then
    say "nsys: skipped, past the budget"
elif [ "${WEFT_NSYS:-0}" = 1 ]; then
    nsys_bin="$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)"
    if [ -z "$nsys_bin" ]; then
        say "nsys: not found on this machine"
    else
        say "nsys: $nsys_bin ($("$nsys_bin" --version 2>&1 | head -1))"
        "$nsys_bin" profile --trace=cuda,osrt --sample=none --cpuctxsw=none --force-overwrite=true -o "$work/fused" \
            node --import tsx bench/ttft-gpu.ts --model "$model" --gpu "$gpu" --reps 2 --ratio "$ratio" --chunk "$chunk" \
            --threads "$(nproc)" --card "$card" --sizes 8192 --variants "${WEFT_NSYS_VARIANTS:-hkvd0-resident}" >"$OUT/nsys-run.log" 2>&1
        "$nsys_bin" stats --report cuda_gpu_kern_sum --report cuda_api_sum --report osrt_sum --format csv --force-export=true \
            --output "$work/fused" "$work/fused.nsys-rep" >>"$OUT/nsys-run.log" 2>&1
        for report in "$work"/fused_*.csv; do [ -f "$report" ] && head -40 "$report" >"$OUT/nsys-$(basename "$report" .csv | sed 's/^fused_//').csv"; done
    fi
fi
# What comes back from a device call is at most 8 files: the logs beyond the main table go into one archive.
extra=$(cd "$OUT" && ls | grep -v -x -e gpu-run.log -e ttft-main.md -e ttft-main.jsonl -e logs.tar.gz \
    -e llama-build.manifest -e 'llama-build.tar.xz.*' || true)
if [ -n "$extra" ]; then
    (cd "$OUT" && tar czf logs.tar.gz $extra && rm -f $extra)
fi
say "wall time of this script $(($(date +%s) - start)) s"
exit $bench_rc
