#!/usr/bin/env bash
# CI's check that the GPU kit still builds and runs: build it (xz -0: seconds, not minutes) into a
# temporary folder, run `run.sh --quick` on whatever adapter is here (llvmpipe in CI), and check
# that it wrote its results point by point. About 45 s on 2 cores with a cold download cache.
#
#   tooling/gpu-kit/smoke.sh [--no-ort]        (after pnpm build; flags go to build.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deer-kit-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
KIT_XZ_LEVEL=${KIT_XZ_LEVEL:-0} bash "$HERE/build.sh" --no-build --out "$tmp/kit" "$@" 2>&1 | tail -n 3
DEER_KIT_RT=$tmp/rt OUT=$tmp/out bash "$tmp/kit/run.sh" --quick --backend webgpu --no-ort >"$tmp/log" 2>&1 || {
  tail -n 40 "$tmp/log"
  echo "smoke.sh: the kit's run.sh --quick failed" >&2
  exit 1
}
dir=$(ls -d "$tmp"/out/deer-bench-webgpu-*)
for f in results.json points.jsonl run.log kit-env.json speedup-sequential.svg; do
  [ -s "$dir/$f" ] || { echo "smoke.sh: the kit wrote no $f" >&2; exit 1; }
done
points=$(wc -l <"$dir/points.jsonl")
node -e '
  const r = require(process.argv[1]);
  const bad = r.points.filter((p) => p.status !== "ok");
  if (r.points.length !== Number(process.argv[2]) || bad.length) { console.error("smoke.sh: points", r.points.length, "lines", process.argv[2], "not ok", bad.length); process.exit(1); }
  const d = r.points[0].deer;
  if (!(d.solveMs > 0 && d.readbackMs >= 0 && d.device && d.device.submitsPerIteration <= 2)) { console.error("smoke.sh: no solve/readback split or device counters", d); process.exit(1); }
' "$dir/results.json" "$points"
echo "smoke.sh: the GPU kit built and ran --quick ($points points) in $((SECONDS - start)) s"
