#!/usr/bin/env bash
# The prepared GPU report, for one H100/H200 without network (see ../shared/gpu/README.md): ci/gpu_check.py at
# the paper's shape (every variant, eager and CUDA graphs, interleaved, plus the matmul-only bound), the CUDA test
# module, the paper-gpu-quick suite, whose records are kept, then whole-model compile for Pre-LN and SAS-P. Every
# step has its own timeout under one deadline, so a slow one cannot take the others' results with it. Output goes to $OUT (default /tmp/gpu-check):
# gpu-check.json (what docs/performance.md's GPU tables are made from, by ci/gpu_table.py), the logs, and records.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
python3 -c "import blockbench" 2>/dev/null || python3 -m pip install -q -e .
# One deadline for the whole script (the device tool allows 600 s a call): a step gets its own cap or what is
# left before the deadline, whichever is less, and is skipped, saying so, when under 30 s is left.
DEADLINE=${GPU_CHECK_DEADLINE:-540}
step() { local secs=$1 name=$2; shift 2; local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 30 ]; then echo "== $name: skipped, ${left} s left before the ${DEADLINE} s deadline"; return; fi
  [ "$secs" -gt "$left" ] && secs=$left
  echo "== $name (timeout ${secs}s)"; local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1; local rc=$?; tail -n 40 "$OUT/$name.log"
  echo "== $name: exit $rc in $((SECONDS - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/nvidia-smi.txt" || true
git log -1 --format='commit %H %cd' > "$OUT/commit.txt" 2>/dev/null || true
step 230 report python3 ci/gpu_check.py --device cuda --skip predicted --json "$OUT/gpu-check.json"
step 90 pytest-cuda python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
# paper-gpu-quick whole: its first GPU run checks its <= 6-minute claim and its ranking (docs/performance.md: unverified).
step 330 suite python3 -m blockbench run --suite paper-gpu-quick --device cuda --out "$OUT/run" --quiet
# Whole-model compile with the fused ops handing inductor their formula: is SAS-P's compiled step still host-bound?
step 150 compiled python3 ci/gpu_check.py --device cuda --variants pre_ln,sas_p,transformer_pp,sas_p_pp \
  --modes eager,compiled,compiled+graphs \
  --rounds 3 --skip memory,attention,bound,predicted --json "$OUT/gpu-check-compiled.json"
tar czf "$OUT/records.tgz" -C "$OUT" run 2>/dev/null || true
for f in "$OUT"/gpu-check*.json; do [ -f "$f" ] && python3 ci/gpu_table.py "$f" > "${f%.json}.md" 2>&1; done
echo "== done in $SECONDS s: $OUT"
