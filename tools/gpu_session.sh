#!/usr/bin/env bash
# GPU measurements for the closing notes, run on a lent GPU machine from the repo root:
#   bash tools/gpu_session.sh STAGE [STAGE ...]
# stages: env tests metrics train decode probe e2e evidence
# Needs the dcor wheel in .whl/ (see the device tool's README); logs go to $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_RESULTS=/tmp/results BENCH_CACHE=/tmp/bench-cache
bench() { python3 -m benchmark "$@"; }
step() { echo; echo "=== $* ($(date +%T))"; }

env_() {
  step env
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, torchvision, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"
  nproc
}
tests() {
  step tests
  timeout 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_metrics_gpu.py tests/test_longtail_training.py 2>&1 | tail -15
}
metrics() {
  step perf metrics
  timeout 300 python3 -m benchmark perf metrics --device cuda --quiet --json > "$OUT/perf_metrics.json"
  echo "rc=$?"
  python3 - "$OUT/perf_metrics.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(r["case"], r["size"], "ours %.4g s" % r["ours_s"], "ref", r.get("reference_s"), "x", r.get("speedup"), "diff", r.get("max_abs_diff"), r.get("note"))
PY
}
train() {
  step perf train
  for bs in 256 512 1024; do
    timeout 200 python3 -m benchmark perf train --device cuda --batch-size $bs --steps 300 --workers 8 --json > "$OUT/perf_train_$bs.json"
    echo "bs=$bs rc=$?"; tail -c 1500 "$OUT/perf_train_$bs.json"; echo
  done
}
fake_imagenet() {  # written once per machine
  [ -d /tmp/fake-imagenet ] || python3 tools/fake_imagenet_lt.py /tmp/fake-imagenet --classes 100 --train 10000
}
decode() {
  step decode
  fake_imagenet
  timeout 300 python3 -m benchmark cache imagenet-lt --data-root /tmp/fake-imagenet --measure 8000 --quiet --workers 16 2>&1 | tail -14
}
probe() {
  step where the gpu decode path spends its time
  fake_imagenet
  timeout 120 python3 tools/decode_probe.py /tmp/fake-imagenet/train 2048
  timeout 120 python3 tools/stream_probe.py /tmp/fake-imagenet 9950
}
e2e() {
  # ResNeXt-50 (the dataset's protocol, bf16), two epochs per decode path: the second epoch's
  # images/s is the steady state (lr 0.02: the noise images diverge at the protocol's 0.2)
  step e2e imagenet-lt per decode path
  fake_imagenet
  for path in ${PATHS:-cache gpu cpu}; do
    BENCH_DECODE=$path timeout 200 python3 -m benchmark run --method ce --dataset imagenet-lt --data-root /tmp/fake-imagenet \
      --set epochs=2 --set lr=0.02 --set batch_size=256 --quiet --json --results /tmp/results-$path > "$OUT/e2e_$path.json"
    echo "decode=$path rc=$?"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; [print(h) for h in r['timings']['train_history']]" "$OUT/e2e_$path.json"
  done
  step torchrun one GPU
  timeout 200 torchrun --nproc_per_node 1 -m benchmark run --method deconfound --dataset imagenet-lt --data-root /tmp/fake-imagenet \
    --set epochs=1 --set backbone=resnet32 --quiet --results /tmp/results-ddp 2>&1 | tail -8
}
evidence() {
  # CLASSES=10: CIFAR-10-LT's shape (5,000 → 50 images per class); CLASSES=100: CIFAR-100-LT's (500 → 5)
  local c=${CLASSES:-10} p=cifar10-lt nmax=5000 ntest=1000
  if [ "$c" = 100 ]; then p=cifar100-lt nmax=500 ntest=100; fi
  step evidence glyph-lt shaped like ${p}, ${p} protocol, 3 seeds
  local shape=(--dataset glyph-lt --protocol $p --set dataset.num_classes=$c --set dataset.n_max=$nmax
               --set dataset.imbalance=100 --set dataset.size=32 --set dataset.n_val=20 --set dataset.n_test=$ntest)
  for m in ce deconfound tde; do
    timeout 560 python3 -m benchmark run --method $m "${shape[@]}" --seed 0 1 2 --fast "${FAST:-compile-graph}" --quiet --results /tmp/results-ev$c \
      ${EPOCHS:+--set epochs=$EPOCHS} 2>&1 | tail -6
  done
  python3 -m benchmark table --results /tmp/results-ev$c --csv > "$OUT/evidence$c.csv"; cat "$OUT/evidence$c.csv"
}
for s in "$@"; do
  case $s in env) env_ ;; *) "$s" ;; esac
done
