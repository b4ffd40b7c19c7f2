#!/usr/bin/env bash
# The GPU check: one prepared script for a machine with a CUDA GPU, under 8 minutes, installing nothing.
# Golden tests (DA-RCOT and PromptIR) on CUDA (float64 to 1e-9; float32 with TF32 allowed to 1e-2); the
# README's main job as it runs there (demo set, `trainer.py --preset demo` and `test.py` under the default
# `--amp auto`: its config.json and summary.json go to OUT_DIR); then the training iteration (fp32, bf16
# autocast; batch 2 and 8, patch 128) and inference (480x320, 1280x720) of the paper-size MRCNet, and the
# 2-process DDP path where there are 2 GPUs. Figures go to OUT_DIR as JSON.
#
#   bash bench/gpu_check.sh [OUT_DIR]        (DARCOT_GOLDEN=path/to/darcot_reference.pt where ../shared is absent)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
python=${PYTHON:-python3}
failed=0

step() {
    echo "== $*"
    local start=$SECONDS
    "$@" || { echo "!! failed ($?): $*"; failed=1; }
    echo "   ($((SECONDS - start)) s)"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'
step timeout 150 $python -m pytest -q -rs -p no:cacheprovider tests/test_golden.py tests/test_promptir.py
demo=$(mktemp -d)
step timeout 60 $python -m data.demo --root "$demo/data"
step timeout 300 $python trainer.py --preset demo --data_root "$demo/data/Train" --log_dir "$demo/runs" \
    --ckpt_dir "$demo/ckpt"
step timeout 120 $python test.py --task all --test_dir "$demo/data/Test" --ckpt "$demo/ckpt/last_map.pth" \
    --save_dir "$demo/results" --overwrite
cp "$demo/runs/config.json" "$out/demo_config.json"
cp "$demo/results/summary.json" "$out/demo_summary.json"
step timeout 150 $python bench/train_step.py --variants reference fast fast+bf16 fast+channels_last --batch 2 \
    --iters 10 --json "$out/train_b2.json"
step timeout 120 $python bench/train_step.py --variants fast fast+bf16 --batch 8 --iters 5 --no_flops \
    --json "$out/train_b8.json"
step timeout 90 $python bench/inference.py --variants official fast fast+bf16 --sizes 480x320 1280x720 \
    --iters 5 --json "$out/inference.json"
if [ "$($python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    step timeout 120 $python -m torch.distributed.run --standalone --nproc_per_node 2 trainer.py --preset small \
        --data_root data/demo/Train --data_lists none --max_iters 20 --log_dir "$out/ddp_runs" --ckpt_dir "$out/ddp_ckpt"
else
    echo "== one GPU: the 2-GPU DDP path is not run"
fi
exit $failed
