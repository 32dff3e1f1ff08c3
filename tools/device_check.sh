#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in ONE run (< 10 minutes on an H200):
# pretraining step of BootMAE ViT-B (batch 256) and ViT-L (batch 128) in bf16,
# eager and with torch.compile, plus the GPU-decode data path. JSON lines,
# nvidia-smi and the log go to $OUT (default ./device_check_out).
#
# The GPU machine (python 3.12, torch 2.11) has torch/torchvision/timm but no
# OpenMMLab packages and no network. Every other need of these wheels is in
# its image (checked against its package list 2026-11-28; importlib_metadata
# stays at 8.7 because 10.x needs lazy-importer, which the image lacks).
# Before the run, on a machine with pip, fetch the wheels once (5.6 MB):
#   echo /.whl/ >> .git/info/exclude
#   bash tools/device_check.sh fetch      # -> .whl/ (python 3.12 wheels)
# then run there (carrying .whl):
#   bash tools/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_check_out}
mkdir -p "$OUT"

# OpenMMLab stack and what it needs beyond the GPU image's packages
WHEELS="mmengine==0.10.7 mmcv-lite==2.1.0 mmpretrain==1.2.0
mmsegmentation==1.2.2 addict==2.4.0 yapf==0.43.0 termcolor==3.3.0
platformdirs==4.14.8 mat4py==0.6.0 modelindex==0.0.2 model-index==0.1.11
ordered-set==4.1.0 importlib_metadata==8.7.0 ftfy==6.3.1 wcwidth==0.7.0
prettytable==3.18.0"

if [[ "${1:-}" == fetch ]]; then
    for w in $WHEELS; do
        python3 -m pip download --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d .whl "$w" || \
        python3 -m pip download --no-deps -d .whl "$w"  # pure-Python sdist
    done
    exit 0
fi

exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
if compgen -G '.whl/*' > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/* || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, mmengine, mmpretrain, bootmae_mm; \
print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1

B=configs/bootmae_vit-b_800e.py
run() {  # name, timeout (s), benchmark_pretrain.py arguments
    local name=$1 limit=$2; shift 2
    echo "== $name: $*"
    timeout "$limit" python3 tools/benchmark_pretrain.py "$@" --device cuda \
        | grep '^{' | tee "$OUT/$name.json"
}
# eager first: the figures that matter most if the run is cut short;
# the limits add up to 8.5 minutes
run vit-b_bs256_bf16 70 $B --batch-size 256 --dtype bf16
run vit-l_bs128_bf16 80 $B --arch l --batch-size 128 --dtype bf16
run vit-b_bs256_bf16_blocking 50 $B --batch-size 256 --dtype bf16 --no-flops \
    --cfg-options model.data_preprocessor.non_blocking=False
run vit-b_bs256_bf16_compile 130 $B --batch-size 256 --dtype bf16 --compile
run vit-l_bs128_bf16_compile 130 $B --arch l --batch-size 128 --dtype bf16 \
    --compile
echo "== data path, GPU decode"
timeout 50 python3 tools/benchmark_data.py --workers 0 4 --gpu-decode \
    --device cuda --batch-size 256 --out-dir /tmp/bdata \
    | tee "$OUT/data_gpu_decode.jsonl"
echo "== done"
