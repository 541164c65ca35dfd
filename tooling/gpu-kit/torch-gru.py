#!/usr/bin/env python3
"""torch-gru: the GPU baseline a PyTorch user runs today, next to deer-bench.

Times torch.nn.GRU (cuDNN on CUDA) over deer-bench's grid: input size = hidden size nh, sequence
length T, batch 16, float32, PyTorch's default weights (uniform +-1/sqrt(nh)) and standard-normal
inputs. Per point: warm-up runs, then timed runs, the median reported. Each run is timed twice,
from the same start:

  compute  until torch.cuda.synchronize() returns (the GRU is done on the GPU)
  total    until y is back on the host (y.cpu()), which is what deer-bench's DEER and sequential
           columns measure ("until y is back on the host")

The input is on the device before timing starts (deer-bench's inputs are also uploaded first).
Writes torch-gru.json (same spirit as deer-bench's results.json) and prints a table.

  python3 torch-gru.py                         # the paper's grid: nh 1..64, T 1e3..1e6
  python3 torch-gru.py --quick                 # deer-bench --quick's GPU grid: nh 1,8,32, T 1e3,1e4
  python3 torch-gru.py --nh 8,64 --T 1e4,1e5 --out results/

Multi-head GRUs (deer-bench's `nh=64 . 8 heads`) have no torch.nn.GRU equivalent and are left out;
quasi-DEER lines are a DEER variant, so there is nothing to time for them here.
Exit status: 0 all points ran or were skipped, 1 a point failed, 2 bad flag or no torch/CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import socket
import statistics
import sys
import time
from datetime import datetime, timezone

FULL = {"nh": [1, 2, 4, 8, 16, 32, 64], "T": [1000, 10000, 100000, 1000000], "budget": 30.0}
QUICK = {"nh": [1, 8, 32], "T": [1000, 10000], "budget": 5.0}
DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2}



# cuDNN's longest sequence in one call.
CUDNN_MAX_T = 65535

def count(text: str) -> int:
    """'1e4', '10k', '1M', '1000' -> int (like deer-bench's --T)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)([kKmM]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    scale = {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    n = float(m.group(1)) * scale
    if n < 1 or n != int(n):
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(n)


def count_list(text: str) -> list[int]:
    return [count(s) for s in text.split(",") if s.strip()]


def size(text: str) -> int:
    """'16GiB', '512MiB', '1e9' -> bytes."""
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
             "g": 1e9, "gb": 1e9, "gib": 1024**3}
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-zA-Z]*)", text.strip())
    if not m or m.group(2).lower() not in units:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16GiB)")
    return int(float(m.group(1)) * units[m.group(2).lower()])


def positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="torch-gru.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="nh 1,8,32 x T 1e3,1e4, budget 5 s")
    p.add_argument("--nh", type=count_list, help="hidden sizes (default 1,2,4,8,16,32,64)")
    p.add_argument("--T", "--t", dest="T", type=count_list, help="sequence lengths (default 1e3,1e4,1e5,1e6)")
    p.add_argument("--batch", type=count, default=16)
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per point (default 1)")
    p.add_argument("--repeats", type=count, default=3, help="timed runs per point (default 3)")
    p.add_argument("--budget", type=positive, help="seconds per point; fewer repeats past it (default 30, quick 5)")
    p.add_argument("--max-time", type=positive, help="skip a point predicted (linearly in T) to take longer than this many seconds")
    p.add_argument("--max-memory", type=size, default=size("16GiB"),
                   help="skip a point whose x + y + h exceed this (default 16GiB)")
    p.add_argument("--deadline", type=positive, help="seconds: points that would start later are skipped (the run ends in about that time)")
    p.add_argument("--device", default="cuda", help="torch device (default cuda; 'cpu' for a dry run without a GPU)")
    p.add_argument("--no-cudnn", action="store_true", help="torch.backends.cudnn.enabled = False (torch's own kernels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for torch-gru.json (default: $OUT, else the current folder)")
    a = p.parse_args(argv)
    profile = QUICK if a.quick else FULL
    a.nh = a.nh or profile["nh"]
    a.T = a.T or profile["T"]
    a.budget = a.budget or profile["budget"]
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    a.out = a.out or os.environ.get("OUT") or "."
    return a


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    return f"{ms:.3g} ms"


def fmt_T(T: int) -> str:
    e = math.log10(T)
    return f"1e{int(e)}" if e == int(e) and T >= 1000 else str(T)


def machine_info() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memoryBytes": mem,
            "platform": f"{platform.system()} {platform.release()}", "arch": platform.machine(),
            "python": platform.python_version(), "hostname": socket.gethostname()}


def time_point(torch, a, nh: int, T: int) -> dict:
    """Warm-up and timed runs of one (nh, T) point; returns the 'gru' timing record."""
    dev = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    cuda = dev.type == "cuda"
    torch.manual_seed(a.seed)
    gru = torch.nn.GRU(input_size=nh, hidden_size=nh, num_layers=1, batch_first=False).to(dev, dtype)
    x = torch.randn(T, a.batch, nh, device=dev, dtype=dtype)  # time-major, like cuDNN wants
    h0 = torch.zeros(1, a.batch, nh, device=dev, dtype=dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def run() -> tuple[float, float]:
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            # cuDNN refuses sequences past 65 535 steps (CUDNN_STATUS_NOT_SUPPORTED): longer ones
            # go through in chunks, the hidden state carried from each into the next.
            h, parts = h0, []
            for s in range(0, T, CUDNN_MAX_T):
                part, h = gru(x[s : s + CUDNN_MAX_T], h)
                parts.append(part)
            y = parts[0] if len(parts) == 1 else torch.cat(parts)
        sync()
        t1 = time.perf_counter()
        y.cpu()
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t0) * 1e3

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    warm = [run() for _ in range(a.warmup)]
    slowest_s = max((w[1] for w in warm), default=0.0) / 1e3
    repeats = a.repeats
    note = None
    if warm and slowest_s * a.repeats > a.budget:
        repeats = max(1, int(a.budget // max(slowest_s, 1e-9)))
        if repeats < a.repeats:
            note = f"{repeats}/{a.repeats} runs (budget {a.budget:g} s)"
    samples = [run() for _ in range(repeats)]
    rec = {
        "medianMs": statistics.median(s[1] for s in samples),
        "samplesMs": [s[1] for s in samples],
        "computeMedianMs": statistics.median(s[0] for s in samples),
        "computeSamplesMs": [s[0] for s in samples],
        "warmupRuns": len(warm),
        "warmupMs": [w[1] for w in warm],
    }
    if note:
        rec["note"] = note
    if cuda:
        rec["peakAllocatedBytes"] = torch.cuda.max_memory_allocated(dev)
    del gru, x, h0
    if cuda:
        torch.cuda.empty_cache()
    return rec


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print(f"torch-gru: PyTorch is not installed ({e})", file=sys.stderr)
        return 2
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch-gru: CUDA is not available to torch (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    torch.backends.cudnn.enabled = not a.no_cudnn
    dev = torch.device(a.device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        device = {"name": torch.cuda.get_device_name(dev), "memoryBytes": props.total_memory,
                  "capability": list(torch.cuda.get_device_capability(dev))}
    else:
        device = {"name": a.device}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    backend = "cudnn" if dev.type == "cuda" and cudnn and not a.no_cudnn else f"torch-{dev.type}"
    print(f"torch-gru: torch {torch.__version__}, {device['name']}, {backend}, {a.dtype}", file=sys.stderr)

    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()

    def save(points: list) -> tuple[dict, str]:
        """Rewrite torch-gru.json with the points so far (after every point: a cut run keeps them)."""
        report = {
            "tool": "torch-gru",
            "version": 1,
            "startedAt": started.isoformat().replace("+00:00", "Z"),
            "wallMs": (time.perf_counter() - t_start) * 1e3,
            "machine": machine_info(),
            "backend": {"name": backend, "device": device},
            "dtype": a.dtype,
            "torch": {"version": torch.__version__, "cuda": getattr(torch.version, "cuda", None), "cudnn": cudnn},
            "options": {"nh": a.nh, "T": a.T, "batch": a.batch, "warmup": a.warmup, "repeats": a.repeats,
                        "budget": a.budget, "maxTime": a.max_time, "maxMemory": a.max_memory, "seed": a.seed,
                        "deadline": a.deadline, "quick": a.quick, "cudnn": not a.no_cudnn, "layout": "time-major (T, batch, nh)",
                        "timing": "medianMs: until y.cpu() returns; computeMedianMs: until cuda.synchronize()"},
            "points": points,
        }
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "torch-gru.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
        return report, path

    grid = [(nh, T) for T in sorted(a.T) for nh in a.nh]  # shortest first: results arrive early
    points = []
    last: dict[int, tuple[int, float]] = {}  # nh -> (T, seconds of one run) for --max-time
    for i, (nh, T) in enumerate(grid):
        point = {"model": f"nh={nh}", "hiddenSize": nh, "inputSize": nh, "T": T, "batch": a.batch}
        est = (2 * T + 1) * a.batch * nh * DTYPE_BYTES[a.dtype]  # x + y + h0
        res: dict = {"point": point, "estimatedBytes": est}
        t0 = time.perf_counter()
        if a.deadline and t0 - t_start > a.deadline:
            res.update(status="skipped", reason=f"time: past --deadline {a.deadline:g} s")
        elif est > a.max_memory:
            res.update(status="skipped", reason=f"memory: ~{est / 2**30:.1f} GiB > --max-memory")
        elif a.max_time and nh in last and last[nh][1] * T / last[nh][0] > a.max_time:
            res.update(status="skipped",
                       reason=f"time: predicted {last[nh][1] * T / last[nh][0]:.3g} s > --max-time {a.max_time:g}")
        else:
            try:
                res["gru"] = time_point(torch, a, nh, T)
                res["status"] = "ok"
                last[nh] = (T, res["gru"]["medianMs"] / 1e3)
            except Exception as e:  # OOM and friends: record, go on
                res.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        res["wallMs"] = (time.perf_counter() - t0) * 1e3
        points.append(res)
        g = res.get("gru")
        summary = (f"total {fmt_ms(g['medianMs'])}, compute {fmt_ms(g['computeMedianMs'])}" if g
                   else f"{res['status']}: {res.get('reason')}")
        print(f"[{i + 1}/{len(grid)}] nh={nh} T={fmt_T(T)}: {summary}", file=sys.stderr, flush=True)
        save(points)

    report, path = save(points)
    rows = [("model", "T", "total", "compute", "runs", "note")]
    for r in points:
        g = r.get("gru") or {}
        rows.append((r["point"]["model"], fmt_T(r["point"]["T"]), fmt_ms(g.get("medianMs")),
                     fmt_ms(g.get("computeMedianMs")), str(len(g.get("samplesMs", []))) if g else "-",
                     r.get("reason") or g.get("note") or ""))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    print()
    for j, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[c]) if c in (0, 5) else cell.rjust(widths[c]) for c, cell in enumerate(row)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    counts = {s: sum(1 for r in points if r["status"] == s) for s in ("ok", "skipped", "error")}
    print(f"\n{len(points)} points ({counts['ok']} ok, {counts['skipped']} skipped, {counts['error']} error)"
          f" in {fmt_ms(report['wallMs'])}\nwrote {path}")
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
