#!/usr/bin/env bash
# GPU check of the speed work (docs/benchmarks.md, "On a GPU"): NEVER RUN YET. It was written on a
# machine without a GPU; nothing below has executed on CUDA. Expect to fix small things the first time.
#
# Two steps:
#
#   tools/gpu_check.sh prepare      # here, with the package registry: the packages the GPU machine
#                                   # lacks, into .whl/ (about 11 MB; .gitignore keeps it out of git)
#   tools/gpu_check.sh              # there, from the repository root, on a bare machine with CUDA,
#                                   # torch, transformers, peft, sentencepiece and no registry;
#                                   # carry .whl; results go to $OUT (or /tmp/gpu_check_out)
#
# What it does there, in at most about 8 minutes:
#   1. checks Python and torch and that a CUDA GPU answers (stops otherwise);
#   2. installs hydra-core, omegaconf, antlr4 and bitarray from .whl, and builds fairseq-fixed
#      0.12.3.1 from its source with --no-deps --no-build-isolation against the machine's own torch;
#   3. kadapter-bench --size large --device cuda in bf16 and amp (fp16 autocast; also fp16 with
#      --with-fp16), utilisation against the card's datasheet peak (--peak-tflops) and beside it the
#      measured 2048² matmul peak;
#   4. one short real `kadapter-train` knowledge run (kadapter_fairseq/tools/train_bench.py, large shape, bf16);
#   5. prints each row's MFU (model FLOPs / step time / datasheet peak).
set -u
MODE="${1:-run}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WHEELS="$REPO/.whl"  # ignored by .gitignore, as the device notes name it
FAIRSEQ_SDIST="fairseq_fixed-0.12.3.1.tar.gz"

if [ "$MODE" = "prepare" ]; then
    set -e
    PY="${PYTHON:-$REPO/.venv/bin/python}"
    mkdir -p "$WHEELS"
    # the GPU image runs Python 3.12; these are pure Python except bitarray
    "$PY" -m pip download --no-deps -d "$WHEELS" hydra-core==1.3.2 omegaconf==2.3.0
    "$PY" -m pip download --no-deps --no-binary :all: -d "$WHEELS" antlr4-python3-runtime==4.9.3
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" bitarray
    # fairseq-fixed as source: it is compiled there, against that machine's torch
    "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$WHEELS" fairseq-fixed==0.12.3.1
    ls -la "$WHEELS"
    exit 0
fi

OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$REPO" MAX_JOBS=16
PY=python3
start=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - start )) s]"; }

echo "== 1. python, torch, GPU $(elapsed)"
$PY - <<'EOF' || { echo "gpu_check: no usable CUDA torch here"; exit 2; }
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
assert torch.cuda.is_available(), "torch sees no CUDA GPU"
p = torch.cuda.get_device_properties(0)
print("gpu", p.name, f"sm{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv || true

echo "== 2. packages, fairseq-fixed from source $(elapsed)"
[ -f "$WHEELS/$FAIRSEQ_SDIST" ] || { echo "gpu_check: $WHEELS/$FAIRSEQ_SDIST missing: run 'tools/gpu_check.sh prepare' where a registry answers, and carry .whl"; exit 2; }
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$WHEELS"/hydra_core-*.whl "$WHEELS"/omegaconf-*.whl "$WHEELS"/bitarray-*.whl || exit 2
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
    "$WHEELS"/antlr4-python3-runtime-*.tar.gz || exit 2
timeout 300 $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
    "$WHEELS/$FAIRSEQ_SDIST" || { echo "gpu_check: fairseq-fixed did not build"; exit 2; }
$PY -c "import fairseq, hydra, omegaconf, kadapter_fairseq; print('fairseq', fairseq.__version__, '| kadapter_fairseq imports')" || exit 2

# the card's dense bf16/fp16 peak from its datasheet (TFLOP/s, no sparsity), for MFU
PEAK=$($PY - <<'EOF'
import torch
name = torch.cuda.get_device_name(0)
table = [("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("A100", 312), ("L40S", 362), ("A10", 125)]
print(next((str(v) for k, v in table if k in name), ""))
EOF
)
echo "datasheet peak: ${PEAK:-unknown} TFLOP/s"
PEAK_ARG=()
[ -n "$PEAK" ] && PEAK_ARG=(--peak-tflops "$PEAK")

echo "== 3. kadapter-bench --size large --device cuda $(elapsed)"
PRECISIONS="bf16,amp"
[ "${WITH_FP16:-}" = "1" ] || [ "${2:-}" = "--with-fp16" ] && PRECISIONS="bf16,amp,fp16"
timeout 270 $PY -m kadapter_fairseq.tools.bench --size large --device cuda --batch 16 --tokens 256 --steps 5 \
    --precision "$PRECISIONS" "${PEAK_ARG[@]}" --json "$OUT/bench_large_cuda.json" || echo "gpu_check: the bench failed or ran out of time"

echo "== 4. kadapter-train, knowledge phase, large, bf16 $(elapsed)"
timeout 150 $PY -m kadapter_fairseq.tools.train_bench --size large --batch 16 --tokens 256 --precision bf16 \
    --updates 8 --warmup-updates 3 --device cuda --json "$OUT/train_large_cuda.json" || echo "gpu_check: the training run failed or ran out of time"

echo "== 5. MFU $(elapsed)"
$PY - "$OUT" "${PEAK:-0}" <<'EOF'
import json, os, sys
out, peak = sys.argv[1], float(sys.argv[2])
path = os.path.join(out, "bench_large_cuda.json")
if os.path.isfile(path):
    r = json.load(open(path))
    for name in r["precisions"]:
        run = r["runs"][name]
        print(f"{name}: measured 2048² matmul peak {run['peak']['tflops_per_s']:.0f} TFLOP/s; utilisation against "
              f"{run['peak_source']} {run['peak_tflops_used']:.0f}")
        for row in run["rows"]:
            base = f", base forward {row['base_util']:.1%}" if "base_util" in row else ""
            print(f"  {row['name']:28s} {row['step_s'] * 1e3:8.1f} ms/step {row['tflops_per_s']:7.1f} TFLOP/s  MFU {row['util']:.1%}{base}")
        print("  ratios:", {k: round(v, 3) for k, v in run["ratios"].items()}, "| FLOP model:", run["flop_ratios"])
path = os.path.join(out, "train_large_cuda.json")
if os.path.isfile(path) and os.path.isfile(os.path.join(out, "bench_large_cuda.json")):
    t = json.load(open(path))
    for name, run in t["runs"].items():
        rows = {x["name"]: x for x in r["runs"].get(name, {}).get("rows", [])}
        knowledge = rows.get("kadapter_knowledge")
        if knowledge and peak:
            # the real path's words/s times the bench row's FLOPs per token (same shape, same precision)
            mfu = run["words_per_s"] * knowledge["flops_per_token"] / 1e12 / peak
            print(f"kadapter-train {name}: {run['words_per_s']:.0f} words/s, MFU about {mfu:.1%} "
                  "(the bench row's FLOPs per token: sentence head and fac adapter, not the dependency head)")
        else:
            print(f"kadapter-train {name}: {run['words_per_s']:.0f} words/s")
EOF
echo "== done $(elapsed); results in $OUT"
