#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run on any CUDA machine with
# the project installed (README "Setup and tests"): the pretraining step of
# BootMAE ViT-B (batch 256) and ViT-L (batch 128) in bf16, eager and with
# torch.compile, ViT-B with blocking host-to-device copies, and the
# GPU-decode data path. The time limits add up to 8.5 minutes. Output: one
# JSON file per measurement, nvidia-smi and the log, in the output folder.
#
#   bash tools/benchmark_gpu.sh [--out DIR] [--wheels DIR] [--dry-run]
#                               [--smoke]
#   bash tools/benchmark_gpu.sh --fetch-wheels DIR [--python-version X.Y]
#
#   --out DIR         output folder (default: $OUT, else ./benchmark_gpu_out)
#   --dry-run         print the commands, run nothing (works without a GPU)
#   --smoke           run every command on the CPU with tiny arguments
#                     (checks the plumbing, not a benchmark; no compile)
#   --wheels DIR      for a host without network whose python has torch,
#                     torchvision and timm but not the OpenMMLab packages:
#                     install the wheels in DIR into a temporary folder and
#                     put it on PYTHONPATH first
#   --fetch-wheels DIR  on a machine with pip and network: download those
#                     wheels (OpenMMLab packages and what they need beyond
#                     torch, torchvision and timm) into DIR and exit
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/benchmark_gpu_out}
WHEEL_DIR= FETCH= PYVER=3.12 DRY=0 SMOKE=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --wheels) WHEEL_DIR=$2; shift 2 ;;
        --fetch-wheels) FETCH=$2; shift 2 ;;
        --python-version) PYVER=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        --smoke) SMOKE=1; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "benchmark_gpu.sh: unknown argument '$1' (see --help)" >&2
           exit 2 ;;
    esac
done

# The OpenMMLab stack at the tested versions (requirements/) and what it
# needs beyond torch, torchvision and timm
WHEELS="mmengine==0.10.7 mmcv-lite==2.1.0 mmpretrain==1.2.0
mmsegmentation==1.2.2 addict==2.4.0 yapf==0.43.0 termcolor==3.3.0
platformdirs==4.14.8 mat4py==0.6.0 modelindex==0.0.2 model-index==0.1.11
ordered-set==4.1.0 importlib_metadata==8.7.0 ftfy==6.3.1 wcwidth==0.7.0
prettytable==3.18.0"

# run one command (with --dry-run: print it only)
x() {
    echo "+ $*" >&2
    [[ $DRY == 1 ]] || "$@"
}

# keep a command's JSON lines in $OUT/NAME
save() {
    if [[ $DRY == 1 ]]; then cat; else grep '^{' | tee "$OUT/$1"; fi
}

if [[ -n $FETCH ]]; then
    for w in $WHEELS; do
        x python3 -m pip download --no-deps --only-binary=:all: \
            --python-version "$PYVER" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d "$FETCH" "$w" ||
        x python3 -m pip download --no-deps -d "$FETCH" "$w"  # sdist only
    done
    exit 0
fi

if [[ $DRY == 0 ]]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/log.txt") 2>&1
fi
export PYTHONUNBUFFERED=1
if [[ -n $WHEEL_DIR ]]; then
    site=$(mktemp -d)
    x python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --target "$site" "$WHEEL_DIR"/* || exit 1
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
# this checkout's bootmae_mm and tools, whatever else is installed
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

DEVICE=cuda DTYPE=bf16
if [[ $SMOKE == 1 ]]; then
    # fp32 (mmengine's AmpOptimWrapper needs a GPU), a tiny encoder, 2
    # images, 1 step: the commands' plumbing only
    DEVICE=cpu DTYPE=fp32
    small=(--arch deit-t --steps 1 --warmup 0 --no-flops)
    data_small=(--num-images 16 --width 80 --height 64 --size 64
                --workers 0 --batch-size 4 --measure-batches 2
                --skip-batches 1 --mask-kwargs
                '{"num_masking_patches": 12, "num_block_masking_patches": 6}')
else
    small=() data_small=()
    if [[ $DRY == 0 ]]; then
        nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
        python3 -c "import torch; assert torch.cuda.is_available(), \
'benchmark_gpu.sh needs a CUDA device (see --smoke, --dry-run)'" || exit 1
    fi
fi
x python3 -c "import torch, mmengine, mmpretrain, bootmae_mm; \
print('torch', torch.__version__, torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'cpu')" || exit 1

B=configs/bootmae_vit-b_800e.py
step() {  # name, time limit (s), batch size, benchmark_pretrain.py args
    local name=$1 limit=$2 bs=$3; shift 3
    [[ $SMOKE == 1 ]] && bs=2 limit=600  # a CPU step takes a while
    if [[ $SMOKE == 1 && " $* " == *" --compile "* ]]; then
        echo "== $name: skipped with --smoke (compiling takes minutes)"
        return
    fi
    echo "== $name"
    x timeout "$limit" python3 tools/benchmark_pretrain.py "$@" \
        --batch-size "$bs" --dtype $DTYPE --device $DEVICE "${small[@]}" |
        save "$name.json"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 0 ]] || echo "== $name: failed (exit $rc; 124: over ${limit} s)"
}
# eager first: the figures that matter most if the run is cut short
step vit-b_bs256_bf16 70 256 $B
step vit-l_bs128_bf16 80 128 $B --arch l
step vit-b_bs256_bf16_blocking 50 256 $B --no-flops \
    --cfg-options model.data_preprocessor.non_blocking=False
step vit-b_bs256_bf16_compile 130 256 $B --compile
step vit-l_bs128_bf16_compile 130 128 $B --arch l --compile
echo "== data path, GPU decode"
x timeout 50 python3 tools/benchmark_data.py --workers 0 4 --gpu-decode \
    --device $DEVICE --batch-size 256 --out-dir /tmp/benchmark_gpu_data \
    "${data_small[@]}" | save data_gpu_decode.jsonl
echo "== done"
