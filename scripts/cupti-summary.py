#!/usr/bin/env python3
"""Summarizes a CUPTI trace (scripts/cupti-trace.c) per benchmark run, between the host marks that bench/ttft-gpu.ts
prints with --trace ("trace @<monotonic ns> <size> <strategy> rep <n>: prepare | first token ... | done").

    python3 scripts/cupti-summary.py TRACE_FILE PROGRESS_LOG [--bursts N]

For each run: wall time between the marks, GPU busy time (union of kernels, copies, memsets), kernel time by name,
copies by direction, the CUDA runtime calls that took the most host time, and the GPU's bursts of work (activity
separated by more than 0.2 ms of idle device), which show the decodes and the host's gaps between them.
Diagnostics only (gpu-run.sh, WEFT_CUPTI=1)."""
import argparse
import collections
import re
import shutil
import subprocess
import sys

COPY_KINDS = {1: "HtoD", 2: "DtoH", 3: "HtoA", 4: "AtoH", 5: "AtoA", 6: "AtoD", 7: "DtoA", 8: "DtoD", 9: "HtoH", 10: "PtoP"}


def read_trace(path):
    clocks, kernels, copies, sets, calls = [], [], [], [], []
    with open(path, errors="replace") as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(",")
            if kind == "K":
                start, end, stream, corr, name = rest.split(",", 4)
                kernels.append((int(start), int(end), name))
            elif kind == "M":
                start, end, nbytes, copy_kind, _corr = rest.split(",")
                copies.append((int(start), int(end), int(nbytes), COPY_KINDS.get(int(copy_kind), copy_kind)))
            elif kind == "S":
                start, end, nbytes = rest.split(",")
                sets.append((int(start), int(end), int(nbytes)))
            elif kind == "R":
                start, end, name, _corr = rest.split(",")
                calls.append((int(start), int(end), name))
            elif kind == "T":
                mono, cupti = rest.split(",")
                clocks.append((int(mono), int(cupti)))
    return clocks, kernels, copies, sets, calls


def demangle(names):
    names = sorted(set(names))
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return {n: (out[i] if i < len(out) and out[i] else n) for i, n in enumerate(names)}


def short(name):
    """A kernel's function name without template arguments or parameters, plus its first template argument."""
    base = re.sub(r"\(.*$", "", name)
    m = re.match(r"(?:void )?([\w:]+)(<(.*)>)?$", base)
    if not m:
        return base[:70]
    fn = m.group(1)
    args = m.group(3) or ""
    first = args.split(",")[0].strip() if args else ""
    return f"{fn}<{first}>" if first and len(first) < 30 else fn


def union_ms(intervals):
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / 1e6


def marks(progress_path):
    runs, current = [], {}
    pat = re.compile(r"trace @(\d+) (\d+) (\S+) rep (\d+): (prepare|first token|done)")
    with open(progress_path, errors="replace") as f:
        for line in f:
            m = pat.search(line)
            if not m:
                continue
            ns, size, strategy, rep, step = int(m.group(1)), m.group(2), m.group(3), int(m.group(4)), m.group(5)
            key = (size, strategy, rep)
            if step == "prepare":
                current[key] = {"label": f"{strategy} @{size} rep {rep}", "start": ns}
            elif step == "done" and key in current:
                run = current.pop(key)
                run["end"] = ns
                runs.append(run)
            elif key in current:
                current[key]["first"] = ns
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("progress")
    ap.add_argument("--bursts", type=int, default=14)
    ap.add_argument("--gap-ms", type=float, default=0.2)
    args = ap.parse_args()
    clocks, kernels, copies, sets, calls = read_trace(args.trace)
    if not clocks:
        sys.exit("no clock pair in the trace")
    offset = clocks[0][1] - clocks[0][0]  # cupti - monotonic
    if len(clocks) > 1:
        drift = (clocks[-1][1] - clocks[-1][0]) - offset
        print(f"clock pairs: {len(clocks)}, CUPTI - monotonic drift over the trace {drift / 1e6:.3f} ms")
    names = demangle([k[2] for k in kernels])
    print(f"records: {len(kernels)} kernels, {len(copies)} copies, {len(sets)} memsets, {len(calls)} runtime calls")
    for run in marks(args.progress):
        s, e = run["start"] + offset, run["end"] + offset
        ks = [k for k in kernels if s <= k[0] < e]
        cs = [c for c in copies if s <= c[0] < e]
        ms = [m for m in sets if s <= m[0] < e]
        rs = [r for r in calls if s <= r[0] < e]
        wall = (e - s) / 1e6
        first = (run.get("first", run["end"]) + offset - s) / 1e6
        busy = union_ms([(k[0], k[1]) for k in ks] + [(c[0], c[1]) for c in cs] + [(m[0], m[1]) for m in ms])
        print(f"\n## {run['label']}: wall {wall:.1f} ms (evaluation starts at {first:.1f}), GPU busy {busy:.1f} ms, "
              f"{len(ks)} kernels, kernel time {sum(k[1] - k[0] for k in ks) / 1e6:.1f} ms")
        by = collections.defaultdict(lambda: [0, 0])
        for k in ks:
            b = by[short(names.get(k[2], k[2]))]
            b[0] += k[1] - k[0]
            b[1] += 1
        print("  kernels by name (ms, count):")
        for name, (ns, n) in sorted(by.items(), key=lambda kv: -kv[1][0])[:16]:
            print(f"    {ns / 1e6:8.2f} {n:6d}  {name[:110]}")
        cp = collections.defaultdict(lambda: [0, 0, 0])
        for c in cs:
            b = cp[c[3]]
            b[0] += c[1] - c[0]
            b[1] += c[2]
            b[2] += 1
        for kind, (ns, nbytes, n) in sorted(cp.items()):
            print(f"  copies {kind}: {n} of {nbytes / 2**20:.1f} MiB in {ns / 1e6:.2f} ms")
        api = collections.defaultdict(lambda: [0, 0])
        for r in rs:
            b = api[r[2]]
            b[0] += r[1] - r[0]
            b[1] += 1
        print("  runtime calls by host time (ms, count): " + "; ".join(
            f"{name} {ns / 1e6:.2f} x{n}" for name, (ns, n) in sorted(api.items(), key=lambda kv: -kv[1][0])[:8]))
        # bursts of device work
        ivs = sorted([(k[0], k[1], "k") for k in ks] + [(c[0], c[1], c[3]) for c in cs])
        bursts = []
        for iv in ivs:
            if bursts and iv[0] - bursts[-1]["end"] <= args.gap_ms * 1e6:
                bursts[-1]["end"] = max(bursts[-1]["end"], iv[1])
                bursts[-1]["n"] += 1
            else:
                bursts.append({"start": iv[0], "end": iv[1], "n": 1, "gap": (iv[0] - bursts[-1]["end"]) if bursts else iv[0] - s})
        print(f"  {len(bursts)} bursts (device idle > {args.gap_ms} ms between them); the longest {args.bursts} in time order, "
              "as +start ms, length ms, records, idle before:")
        longest = sorted(sorted(bursts, key=lambda b: -(b["end"] - b["start"]))[:args.bursts], key=lambda b: b["start"])
        print("    " + "  ".join(f"+{(b['start'] - s) / 1e6:.1f}:{(b['end'] - b['start']) / 1e6:.1f}/{b['n']}/{b['gap'] / 1e6:.1f}"
                                for b in longest))
        idle = sum(b["gap"] for b in bursts) / 1e6
        print(f"  device idle between bursts (and before the first): {idle:.1f} ms; after the last: {(e - bursts[-1]['end']) / 1e6 if bursts else wall:.1f} ms")


if __name__ == "__main__":
    main()
