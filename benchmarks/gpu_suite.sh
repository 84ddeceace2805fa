#!/usr/bin/env bash
# The accelerator benchmarks in one go, on a machine with one GPU and at least 4 CPU cores (BENCHMARKS.md quotes
# its output). GPU jobs run one after another on cores 2.. ; meanwhile the CPU-only jobs run on cores 0-1 alone
# (JAX_PLATFORMS=cpu), as on the project's 2-core machine. Results go to ${OUT:-benchmarks/results}.
# Usage: bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
last=$(($(nproc) - 1))
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.6
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

cpu_jobs() {
  export JAX_PLATFORMS=cpu
  timeout 240 taskset -c 0,1 python3 benchmarks/monitor.py --repeats 5 --json "$out/monitor_cpu2.json"
  timeout 240 taskset -c 0,1 python3 benchmarks/esn.py --repeats 1 --json "$out/esn_cpu2.json"
}
cpu_jobs > "$out/cpu_jobs.log" 2>&1 &
cpu_pid=$!

gpu() { timeout "$1" taskset -c "2-$last" python3 "${@:2}"; }
gpu 200 benchmarks/esn.py --repeats 3 --unroll 16 --dense-row --json "$out/esn_gpu.json"
gpu 150 benchmarks/monitor.py --repeats 5 --large --json "$out/monitor_gpu.json"
gpu 150 benchmarks/accelerator.py --repeats 10 --json "$out/accelerator_gpu.json"
wait "$cpu_pid"
echo "---- CPU jobs (cores 0-1) ----"
cat "$out/cpu_jobs.log"
