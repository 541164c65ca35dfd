#!/usr/bin/env python3
"""DEER in JAX, as the paper describes it: the side-by-side baseline for deer-bench's webgpu numbers.

Newton's method over the whole trajectory of a GRU (PyTorch's equations, as torch.nn.GRU):
each iteration evaluates f(y_{t-1}, x_t) and its Jacobian J_t at every (b, t) (jax.vmap of
jax.jacfwd; quasi-DEER keeps only its diagonal), then solves the linear recurrence
y_t = J_t y_{t-1} + (f_t - J_t y_{t-1}) for all t with jax.lax.associative_scan over the affine
maps (A, b), composed as (A2, b2) o (A1, b1) = (A2 A1, A2 b1 + b2). It stops when
max |y_new - y| <= atol + rtol |y_new| everywhere, or after T + 1 iterations (max_iter), inside
one jitted lax.while_loop, so one call is one device program. Each point is checked against a
sequential lax.scan of the same cell.

  python3 jax-deer.py --quick                      # nh 1,8 x T 1e3,1e4
  python3 jax-deer.py                              # nh 1,8,32,64 x T 1e4,1e5,1e6, dense + quasi
  python3 jax-deer.py --nh 8 --T 1e5 --out DIR     # --help for the rest

Writes jax-deer.json (rewritten after every point, so a killed run keeps what it finished):
machine, jax version and devices, options, and per point the timed samples (`compute`: until
block_until_ready; `total`: until y is a NumPy array on the host), iterations, max |y - y_seq|.
Points whose estimated memory (the scan holds about 3 copies of the T*B*n*s Jacobians) exceeds
--max-memory, or predicted (linearly in T from the series' previous point) over --max-time, are
skipped; errors (out of memory) are recorded and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

FULL = {"nh": [1, 8, 32, 64], "T": [10_000, 100_000, 1_000_000], "budget": 5.0}
QUICK = {"nh": [1, 8], "T": [1_000, 10_000], "budget": 2.0}


def count(text: str) -> int:
    v = text.strip().lower()
    scale = 1
    if v.endswith("k"):
        v, scale = v[:-1], 1000
    elif v.endswith("m"):
        v, scale = v[:-1], 1_000_000
    n = float(v) * scale
    if not n.is_integer() or n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(n)


def count_list(text: str) -> list[int]:
    return [count(t) for t in text.split(",")]


def size(text: str) -> int:
    units = {"gib": 2**30, "mib": 2**20, "kib": 2**10, "": 1}
    t = text.strip().lower()
    for u in ("gib", "mib", "kib", ""):
        if t.endswith(u):
            return int(float(t[: len(t) - len(u)]) * units[u])
    raise argparse.ArgumentTypeError(text)


def fmt_T(T: int) -> str:
    """10000 -> '1e4' (as deer-bench's point ids), 1500 -> '1500'."""
    e = math.log10(T)
    return f"1e{int(e)}" if e.is_integer() and e >= 3 else str(T)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="nh 1,8 x T 1e3,1e4, budget 2 s")
    p.add_argument("--nh", type=count_list, help="hidden sizes (default 1,8,32,64)")
    p.add_argument("--T", "--t", dest="T", type=count_list, help="sequence lengths (default 1e4,1e5,1e6)")
    p.add_argument("--batch", type=count, default=16)
    p.add_argument("--no-quasi", action="store_true", help="dense Jacobians only (default: also quasi-DEER)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per point after compiling (default 1)")
    p.add_argument("--repeats", type=count, default=3)
    p.add_argument("--budget", type=float, help="seconds per point; fewer repeats past it (default 5, quick 2)")
    p.add_argument("--max-time", type=float, default=math.inf, help="skip points predicted over this many seconds per run")
    p.add_argument("--deadline", type=float, default=math.inf, help="seconds: points that would start later are skipped")
    p.add_argument("--max-memory", type=size, default=size("24GiB"), help="skip points estimated above this (default 24GiB)")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--device", default=None, help="cpu for a dry run (sets JAX_PLATFORMS before importing jax)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for jax-deer.json (default: $OUT, else the current folder)")
    a = p.parse_args(argv)
    prof = QUICK if a.quick else FULL
    a.nh = a.nh or prof["nh"]
    a.T = a.T or prof["T"]
    a.budget = a.budget if a.budget is not None else prof["budget"]
    a.out = a.out or os.environ.get("OUT") or "."
    return a


def build(jax, jnp, nh: int, quasi: bool, atol: float, rtol: float):
    """The GRU step, DEER (jitted) and the sequential reference (jitted) for hidden size nh."""
    lax = jax.lax

    def cell(p, h, x):
        gi = p["W_ih"] @ x + p["b_ih"]
        gh = p["W_hh"] @ h + p["b_hh"]
        r = jax.nn.sigmoid(gi[:nh] + gh[:nh])
        z = jax.nn.sigmoid(gi[nh : 2 * nh] + gh[nh : 2 * nh])
        n = jnp.tanh(gi[2 * nh :] + r * gh[2 * nh :])
        return (1 - z) * n + z * h

    # Over (T, B): f and J at every element.
    f_all = jax.vmap(jax.vmap(cell, (None, 0, 0)), (None, 0, 0))
    jac_all = jax.vmap(jax.vmap(jax.jacfwd(cell, argnums=1), (None, 0, 0)), (None, 0, 0))

    def combine(e1, e2):
        # e1 earlier, e2 later (associative_scan passes them in that order); batched over leading dims.
        A1, b1 = e1
        A2, b2 = e2
        if quasi:
            return A2 * A1, A2 * b1 + b2
        return jnp.einsum("...ij,...jk->...ik", A2, A1), jnp.einsum("...ij,...j->...i", A2, b1) + b2

    def newton_step(p, xs, h0, y):
        prev = jnp.concatenate([h0[None], y[:-1]], axis=0)  # y_{t-1}, (T, B, n)
        f = f_all(p, prev, xs)
        J = jac_all(p, prev, xs)  # (T, B, n, n)
        if quasi:
            A = jnp.diagonal(J, axis1=-2, axis2=-1)
            c = f - A * prev
        else:
            A = J
            c = f - jnp.einsum("...ij,...j->...i", J, prev)
        # The boundary folds into the first offset: y_1 = A_1 h0 + c_1.
        first = (jnp.einsum("bij,bj->bi", A[0], h0) if not quasi else A[0] * h0) + c[0]
        c = c.at[0].set(first)
        A = A.at[0].set(jnp.zeros_like(A[0]))
        _, y_new = lax.associative_scan(combine, (A, c), axis=0)
        return y_new

    @jax.jit
    def deer(p, xs, h0, max_iter):
        T = xs.shape[0]
        y0 = jnp.zeros((T,) + h0.shape, xs.dtype)

        def cond(state):
            _, it, done = state
            return jnp.logical_and(it < max_iter, jnp.logical_not(done))

        def body(state):
            y, it, _ = state
            y_new = newton_step(p, xs, h0, y)
            ok = jnp.all(jnp.abs(y_new - y) <= atol + rtol * jnp.abs(y_new))
            return y_new, it + 1, ok

        y, it, ok = lax.while_loop(cond, body, (y0, jnp.int32(0), jnp.bool_(False)))
        return y, it, ok

    @jax.jit
    def sequential(p, xs, h0):
        step = jax.vmap(cell, (None, 0, 0))

        def body(h, x):
            h = step(p, h, x)
            return h, h

        _, ys = lax.scan(body, h0, xs)
        return ys

    return deer, sequential


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if a.device:
        os.environ["JAX_PLATFORMS"] = a.device
    try:
        import jax
        import jax.numpy as jnp
        import numpy as np
    except ImportError as e:
        print(f"jax-deer: JAX is not installed ({e})", file=sys.stderr)
        return 2
    # JAX's default float32 matmuls on NVIDIA GPUs run in TF32 (~1e-3 relative): Newton then never
    # meets a 1e-4 tolerance and runs to T + 1 iterations. Full float32, as deerjs computes.
    jax.config.update("jax_default_matmul_precision", "highest")

    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "jax-deer.json")
    report = {
        "tool": "jax-deer",
        "version": 1,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "options": {k: (v if not (isinstance(v, float) and math.isinf(v)) else None) for k, v in vars(a).items()},
        "layout": "time-major (T, batch, nh), float32, GRU as torch.nn.GRU (input size = nh)",
        "points": [],
    }

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)

    save()
    B = a.batch
    t_start = time.perf_counter()
    last_per_T: dict[tuple[int, bool], float] = {}
    kinds = [False] if a.no_quasi else [False, True]
    print(f"{'point':<28} {'iters':>5} {'compute':>10} {'total':>10} {'seq':>10} {'max|dy|':>9}", flush=True)
    # Smallest states first, each over its T: DEER's case (and the targets) before the
    # dense nh = 32, 64 points, whose every shape compiles for seconds.
    for nh in sorted(set(a.nh)):
        for T in sorted(set(a.T)):
            for quasi in kinds:
                if quasi and nh == 1:
                    continue
                pid = f"gru-n{nh}-T{fmt_T(T)}-{'diagonal' if quasi else 'dense'}"
                s = 1 if quasi else nh
                est = 3 * T * B * nh * s * 4 + 8 * T * B * nh * 4
                point = {"id": pid, "nh": nh, "T": T, "batch": B, "jacobian": "diagonal" if quasi else "dense",
                         "estimatedBytes": est}
                key = (nh, quasi)
                pred = last_per_T.get(key)
                if time.perf_counter() - t_start > a.deadline:
                    point.update(status="skipped", reason=f"past --deadline {a.deadline:g} s")
                elif est > a.max_memory:
                    point.update(status="skipped", reason=f"needs ~{est / 2**30:.1f} GiB > --max-memory")
                elif pred is not None and pred * T > a.max_time:
                    point.update(status="skipped", reason=f"predicted ~{pred * T:.0f} s (DEER + sequential) > --max-time")
                else:
                    try:
                        point.update(run_point(jax, jnp, np, a, nh, T, B, quasi))
                        last_per_T[key] = (point["deer"]["medianTotalMs"] + point["sequential"]["medianTotalMs"]) / 1000 / T
                    except Exception as err:  # out of memory and the like: recorded, the run goes on
                        point.update(status="error", reason=f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
                report["points"].append(point)
                save()
                if point["status"] == "ok":
                    d = point["deer"]
                    print(f"{pid:<28} {d['iterations']:>5} {d['medianComputeMs']:>9.1f}ms {d['medianTotalMs']:>9.1f}ms "
                          f"{point['sequential']['medianTotalMs']:>9.1f}ms {point['maxDiff']:>9.2e}", flush=True)
                else:
                    print(f"{pid:<28} {point['status']}: {point['reason']}", flush=True)
    report["finishedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print(f"wrote {path}", flush=True)
    return 1 if any(p["status"] == "error" for p in report["points"]) else 0


def run_point(jax, jnp, np, a, nh: int, T: int, B: int, quasi: bool) -> dict:
    key = jax.random.PRNGKey(a.seed)
    k = jax.random.split(key, 6)
    bound = 1 / math.sqrt(nh)
    u = lambda kk, shape: jax.random.uniform(kk, shape, jnp.float32, -bound, bound)  # noqa: E731
    p = {"W_ih": u(k[0], (3 * nh, nh)), "W_hh": u(k[1], (3 * nh, nh)), "b_ih": u(k[2], (3 * nh,)),
         "b_hh": u(k[3], (3 * nh,))}
    xs = jax.random.normal(k[4], (T, B, nh), jnp.float32)
    h0 = jnp.zeros((B, nh), jnp.float32)
    deer, sequential = build(jax, jnp, nh, quasi, a.atol, a.rtol)
    max_iter = jnp.int32(T + 1)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        leaves = out if isinstance(out, tuple) else (out,)
        for leaf in leaves:
            leaf.block_until_ready()
        t1 = time.perf_counter()
        host = np.asarray(leaves[0])
        t2 = time.perf_counter()
        return out, host, (t1 - t0) * 1000, (t2 - t0) * 1000

    def measure(fn):
        t0 = time.perf_counter()
        out, host, _, _ = timed(fn)  # compiles
        compile_ms = (time.perf_counter() - t0) * 1000
        for _ in range(a.warmup):
            out, host, c, _ = timed(fn)
            if c > a.budget * 1000:
                break
        compute, total, spent = [], [], 0.0
        for i in range(a.repeats):
            if i > 0 and spent + (total[-1] if total else 0) > a.budget * 1000:
                break
            out, host, c, t = timed(fn)
            compute.append(c)
            total.append(t)
            spent += t
        return out, host, {"firstCallMs": compile_ms, "computeMs": compute, "totalMs": total,
                           "medianComputeMs": float(np.median(compute)), "medianTotalMs": float(np.median(total))}

    seq_out, y_seq, seq = measure(lambda: sequential(p, xs, h0))
    (y, it, ok), y_deer, d = measure(lambda: deer(p, xs, h0, max_iter))
    d["iterations"] = int(it)
    d["converged"] = bool(ok)
    return {"status": "ok", "deer": d, "sequential": seq,
            "maxDiff": float(np.max(np.abs(y_deer - y_seq))),
            "speedupSequential": seq["medianTotalMs"] / d["medianTotalMs"]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
