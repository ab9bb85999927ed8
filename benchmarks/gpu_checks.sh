#!/bin/bash
# The GPU rows of the benchmarks and the GPU paths of the tests, as one run for a lent GPU machine
# (its time is short: ~8 minutes here). That machine has torch but neither lightly nor this repo's data,
# and reaches no network, so prepare a carried folder first, on the machine you develop on:
#
#   bash benchmarks/gpu_checks.sh --prepare      # .dev/: UC Merced copy (55 MB) + lightly/defusedxml wheels
#
# then run `bash benchmarks/gpu_checks.sh` on the GPU machine with .dev carried and $OUT set (results land
# there: throughput and FPS JSON, SSL quality JSON/logs for GPU budgets, the pytest log of the GPU paths).
set -u
if [ "${1:-}" = "--prepare" ]; then
    root=$(git rev-parse --show-toplevel) && cd "$root" || exit 1
    grep -qx '/.dev/' "$(git rev-parse --git-dir)/info/exclude" || echo '/.dev/' >> "$(git rev-parse --git-dir)/info/exclude"
    mkdir -p .dev/whl .dev/shared
    src=${CURATOR_SHARED_DATA:-../shared/data}
    [ -d .dev/shared/ucmerced ] || cp -r "$src/ucmerced" .dev/shared/ || exit 1
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .dev/whl lightly==1.6.0 defusedxml==0.7.1 || exit 1
    du -sh .dev
    exit 0
fi
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
T0=$(date +%s)
el() { echo "== $(( $(date +%s) - T0 )) s: $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 CURATOR_SHARED_DATA=$PWD/.dev/shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, lightly; print('torch', torch.__version__, 'tv', torchvision.__version__, 'lightly', lightly.__version__, torch.cuda.get_device_name(0))" || exit 1

el "training throughput + GPU utilisation (NVML)"
timeout 130 python3 benchmarks/ssl_throughput.py --gpu-only --out "$OUT/ssl_throughput_gpu.json" 2>&1 | grep -v Warning
el "exact FPS at 1M x 512 against HBM bandwidth"
timeout 100 python3 benchmarks/sampling_speed.py --gpu-only --out "$OUT/sampling_speed_gpu.json" 2>&1 | grep -v Warning

el "GPU paths of the index (faiss-gpu, else the torch search) and of the classifier heads"
if python3 -c "import faiss" 2>/dev/null; then
    timeout 120 python3 -m pytest tests/test_index.py tests/test_active.py -q -p no:cacheprovider -rs \
        -k "torch_twin or device_resolution or head_errors" > "$OUT/pytest_gpu_index_heads.log" 2>&1
    echo "pytest rc $?" >> "$OUT/pytest_gpu_index_heads.log"; tail -3 "$OUT/pytest_gpu_index_heads.log"
else
    echo "faiss is not installed on this machine: the index and heads GPU tests were not run" | tee "$OUT/pytest_gpu_index_heads.log"
fi

el "SSL quality on GPU budgets, and the GPU paths of the tests, side by side"
export OMP_NUM_THREADS=4
END=$(( $(date +%s) + 230 ))
left() { echo $(( END - $(date +%s) )); }
( timeout "$(left)" python3 -m pytest tests/test_train.py tests/test_sampling.py tests/test_preprocess.py -q -p no:cacheprovider --timeout 150 \
      -k "not benchmark" > "$OUT/pytest_gpu.log" 2>&1; echo "pytest rc $?" >> "$OUT/pytest_gpu.log" ) &
( timeout "$(left)" python3 benchmarks/ssl_quality.py --models resnet18_cifar:simsiam --epochs 100 --batch-size 128 \
      --workdir /tmp/q1 --out "$OUT/q_cifar_simsiam100.json" > "$OUT/q1.log" 2>&1
  timeout "$(left)" python3 benchmarks/ssl_quality.py --models resnet18:simsiam small_cnn:simsiam --epochs 100 \
      --batch-size 128 --workdir /tmp/q1 --out "$OUT/q_r18_simsiam100.json" >> "$OUT/q1.log" 2>&1 ) &
( timeout "$(left)" python3 benchmarks/ssl_quality.py --models resnet18:simsiam --epochs 200 --batch-size 64 \
      --workdir /tmp/q2 --out "$OUT/q_r18_simsiam200_b64.json" > "$OUT/q2.log" 2>&1 ) &
wait
el done
tail -5 "$OUT/pytest_gpu.log"; grep -h "^  \|^|" "$OUT/q1.log" "$OUT/q2.log"
