#!/usr/bin/env bash
# The GPU paths, on a machine that has a GPU, in about 5 minutes: `make gpu`, `biopsia gpu-check`, one short
# training epoch and one whole-slide prediction on the GPU (MXNet where its kernels run, ONNX Runtime's CUDA
# provider otherwise, as `--engine auto` chooses), each against the CPU on the same data. Prints JSON on
# stdout; every command's output is kept in OUT (default: a new temporary folder, named on stderr).
#
#     bash bench/gpu_check.sh                      # OUT=/some/folder bash bench/gpu_check.sh to keep the logs
#
# On a machine without a GPU it says so (gpu-check's route is "cpu") and measures the CPU alone.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d -t biopsia-gpu-check-XXXX)}
mkdir -p "$OUT"
PY=.venv/bin/python
say() { echo "[gpu_check] $*" >&2; }
seconds() { $PY -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 1))' "$1"; }
say "logs in $OUT"

start=$(date +%s.%N)
if ! make gpu > "$OUT/make-gpu.log" 2>&1; then
  say "make gpu failed:"; tail -20 "$OUT/make-gpu.log" >&2; exit 1
fi
make_gpu_s=$(seconds "$start")
$PY main.py gpu-check --json > "$OUT/gpu-check.json" 2> "$OUT/gpu-check.err"
check_rc=$?
route=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["route"])' "$OUT/gpu-check.json") || route=unknown
say "make gpu: ${make_gpu_s} s; gpu-check exit ${check_rc}, route ${route}"
case "$route" in
  mxnet-gpu) train_gpu=(--device gpu:0); predict_gpu=(--device gpu:0 --engine mxnet) ;;
  onnx-cuda) train_gpu=(); predict_gpu=(--device gpu:0 --engine onnx) ;;  # MXNet has no kernels for this GPU
  *) train_gpu=(); predict_gpu=() ;;
esac

# one training epoch on a small synthetic slide's tiles (MXNet only: ONNX Runtime does not train)
W=$OUT/work
mkdir -p "$W"
$PY main.py synth "$W/train.tiff" --seed 29 --width 8192 --height 6144 > "$OUT/synth.log" 2>&1
$PY main.py dataset "$W/train.tiff" --tile 128 --mpp 1 --out "$W/tiles" > "$OUT/dataset.log" 2>&1
tiles=$($PY -c 'import json, sys; m = json.load(open(sys.argv[1])); print(sum(m["counts"]["train"].values()))' \
        "$W/tiles/manifest.json" 2>/dev/null || echo 0)
train_on() {  # train_on NAME ARGS...: seconds of one epoch, or null when it fails
  local name=$1; shift
  local t; t=$(date +%s.%N)
  if $PY main.py train "$W/tiles" --out "$W/model-$name" --epochs 1 "$@" > "$OUT/train-$name.log" 2>&1; then
    seconds "$t"
  else
    say "training on $name failed:"; tail -5 "$OUT/train-$name.log" >&2; echo null
  fi
}
train_cpu_s=$(train_on cpu --device cpu)
train_gpu_s=null
[ ${#train_gpu[@]} -gt 0 ] && train_gpu_s=$(train_on gpu "${train_gpu[@]}")

# one whole-slide prediction with the demo model: the slide's tiles per second, as predict reports them
$PY main.py synth "$W/slide.tiff" --seed 31 --width 24576 --height 18432 --resection >> "$OUT/synth.log" 2>&1
predict_on() {  # predict_on NAME ARGS...: tiles/s of the slide, or null when it fails
  local name=$1; shift
  if $PY main.py predict "$W/slide.tiff" --model resources/demo-model --out "$W/pred-$name" --no-tiff "$@" \
      > "$OUT/predict-$name.log" 2>&1; then
    sed -n 's/.* tiles in .* s (\([0-9]*\) tiles\/s).*/\1/p' "$OUT/predict-$name.log" | tail -1
  else
    say "prediction on $name failed:"; tail -5 "$OUT/predict-$name.log" >&2; echo null
  fi
}
predict_cpu=$(predict_on cpu --device cpu --engine mxnet)
predict_gpu_tps=null
[ ${#predict_gpu[@]} -gt 0 ] && predict_gpu_tps=$(predict_on gpu "${predict_gpu[@]}")

$PY - "$OUT" "$route" "$make_gpu_s" "$tiles" "$train_cpu_s" "$train_gpu_s" "${predict_cpu:-null}" \
    "${predict_gpu_tps:-null}" "${predict_gpu[*]:-}" <<'EOF'
import json, sys
out, route, make_s, tiles, train_cpu, train_gpu, pred_cpu, pred_gpu, gpu_args = sys.argv[1:]
num = lambda v: None if v in ("null", "") else float(v)
check = json.load(open(f"{out}/gpu-check.json"))
result = {"route": route, "gpus": check.get("gpus"), "mxnet": check.get("mxnet"), "make_gpu_s": num(make_s),
          "conv_check": check.get("conv_check"), "onnx_conv_check": check.get("onnx_conv_check"),
          "train_one_epoch": {"tiles": int(tiles), "cpu_s": num(train_cpu), "gpu_s": num(train_gpu)},
          "predict_slide_tiles_per_s": {"cpu": num(pred_cpu), "gpu": num(pred_gpu), "gpu_args": gpu_args or None},
          "logs": out}
if result["train_one_epoch"]["gpu_s"] and result["train_one_epoch"]["cpu_s"]:
    result["train_gpu_speedup"] = round(result["train_one_epoch"]["cpu_s"] / result["train_one_epoch"]["gpu_s"], 2)
if num(pred_gpu) and num(pred_cpu):
    result["predict_gpu_speedup"] = round(num(pred_gpu) / num(pred_cpu), 2)
print(json.dumps(result, indent=1))
EOF
