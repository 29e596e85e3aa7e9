#!/usr/bin/env bash
# Second GPU probe: where the GPU decode path's time goes, and two-epoch ImageNet-LT-shaped runs
# (ResNeXt-50, bf16) per decode path; the second epoch's images/s is the steady state.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" BENCH_CACHE=/tmp/bench-cache
[ -d /tmp/fake-imagenet ] || python3 tools/fake_imagenet_lt.py /tmp/fake-imagenet --classes 100 --train 10000
timeout 120 python3 tools/decode_probe.py /tmp/fake-imagenet/train 2048
for path in ${PATHS:-cache gpu}; do
  BENCH_DECODE=$path timeout 150 python3 -m benchmark run --method ce --dataset imagenet-lt --data-root /tmp/fake-imagenet \
    --set epochs=2 --set lr=0.02 --set batch_size=256 --quiet --json --results /tmp/r-$path > "$OUT/e2e_$path.json"
  echo "decode=$path rc=$?"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; [print(h) for h in r['timings']['train_history']]" "$OUT/e2e_$path.json"
done
