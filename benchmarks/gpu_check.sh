#!/usr/bin/env bash
# The GPU check of docs/speed.md: the seed config's training step (seed pipeline, zoo fp32, zoo auto = AMP,
# zoo auto + torch.compile) and 256 px generator inference (fp32, auto, auto + compile) on CUDA, then one table
# of img/s, ratios, first-step (compile) seconds and peak GPU memory.
#
#   bash benchmarks/gpu_check.sh [OUT_JSON]        # default: gpu-check.json in the current folder
#
# Needs zoo installed with a CUDA build of torch (README, "Set up"). Runs for a few minutes on a recent GPU:
# 5 timed rounds per case after a warm-up. ZOO_BENCH_ROUNDS, ZOO_BENCH_SEED_WORKERS as in
# benchmarks/bench_training_speed.py.
set -euo pipefail
cd "$(dirname "$0")/.."
json="${1:-gpu-check.json}"
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    "gpu_check.sh: torch sees no CUDA device (torch.cuda.is_available() is False): run it on a GPU machine")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
ZOO_BENCH_SEED=1 ZOO_BENCH_DEVICE=cuda ZOO_BENCH_ROUNDS="${ZOO_BENCH_ROUNDS:-5}" \
    python -m pytest benchmarks/bench_training_speed.py -k seed --benchmark-enable -q -p no:cacheprovider \
    --benchmark-json "$json"
python - "$json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["benchmarks"]
print(f"\n{'case':<34} {'img/s':>9} {'vs seed':>8} {'first s':>8} {'peak MiB':>9}")
for r in results:
    info = r["extra_info"]
    case = f"{r['name'].split('[')[0].replace('test_', '')}[{info.get('variant') or info.get('mode')}]"
    ratio = info.get("speedup_vs_seed_pipeline")
    first = info.get("first_step_s", info.get("first_call_s"))
    print(f"{case:<34} {info['img_per_s']:>9.1f} {ratio if ratio is not None else '':>8} "
          f"{first if first is not None else '':>8} {info.get('peak_memory_mib', ''):>9}")
PY
