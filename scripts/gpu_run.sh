#!/usr/bin/env bash
# medsft's GPU checks on a lent GPU machine with no network: unpack the bundle, then scripts/gpu_check.py.
# `python scripts/gpu_bundle.py` copies this file to .gpu/run.sh. On the GPU machine, from the repository root:
#   bash .gpu/run.sh                              # the default stages, in the order of their value
#   STAGES=medqa,gguf bash .gpu/run.sh            # some of them (a second run in the same lease)
#   MEDSFT_GPU_CAPS=unsloth_train=150 bash .gpu/run.sh   # another cap for a stage (seconds)
# Results go to $OUT (the device tool's folder), else .gpu/out: stages.jsonl (one line per stage, written as the
# stage ends, so a time-out keeps what came before), gpu_check.json and the summary table, env.json, run.log and
# logs.tar.gz (each stage's log). Five files: the device tool returns at most eight.
# Worst case, every cap reached: UNPACK_CAP_S + ENV_CAP_S + CHECK_CAP_S = 445 s, so two runs fit in 15 minutes.
set -uo pipefail

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BUNDLE")
OUT=${OUT:-$BUNDLE/out}
WORK=${MEDSFT_GPU_WORK:-/tmp/medsft-gpu}
PY=${PYTHON:-python3}
STAGES=${STAGES:-labels,unsloth_train,transformers,medqa,gguf,multimodal,validation,stall_probe}
UNPACK_CAP_S=30
ENV_CAP_S=15
CHECK_CAP_S=400 # gpu_check's set-up, stage caps and process slack (scripts/gpu_check.py) fit in it

mkdir -p "$OUT" "$WORK"
cd "$ROOT" || exit 1
log() { echo "[run.sh +${SECONDS}s] $*" | tee -a "$OUT/run.log"; }

log "unpacking $BUNDLE into $WORK"
rm -rf "$WORK/site" "$WORK/llama.cpp" "$WORK/llama-cpp-python" "$WORK/models" "$WORK/check"
# pip only copies the carried wheels (no index, no dependencies: the image has the rest); Python unpacks the
# archives, so no xz binary is needed there.
timeout "$UNPACK_CAP_S" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$WORK/site" "$BUNDLE"/wheels/*.whl 2>&1 | tee -a "$OUT/run.log"
[ "${PIPESTATUS[0]}" = 0 ] || { log "pip install of the wheels failed"; exit 1; }
timeout "$UNPACK_CAP_S" "$PY" -c '
import sys, tarfile
for archive in sys.argv[2:]:
    with tarfile.open(archive) as tar:
        tar.extractall(sys.argv[1], filter="data")
' "$WORK" "$BUNDLE/llama.cpp.tar.xz" "$BUNDLE/models.tar.xz" || { log "unpacking the archives failed"; exit 1; }

export PYTHONPATH="$WORK/site:$WORK/llama-cpp-python:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MEDSFT_LLAMA_CPP="$WORK/llama.cpp" MEDSFT_CACHE="$WORK/cache" HF_HOME="$WORK/hf" HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# llama.cpp's CPU library needs libgomp.so.1: the system's if it has one, else the copy the bundle carries.
if ! ldconfig -p 2>/dev/null | grep -F libgomp.so.1 >/dev/null; then
    export LD_LIBRARY_PATH="$WORK/llama-cpp-python/fallback-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    log "no system libgomp.so.1: using the carried one"
fi

log "environment"
timeout "$ENV_CAP_S" "$PY" - "$OUT/env.json" <<'EOF' 2>&1 | tee -a "$OUT/run.log"
import json, platform, subprocess, sys
from importlib import metadata

env = {"python": sys.version.split()[0], "platform": platform.platform()}
for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "bitsandbytes", "unsloth",
             "unsloth_zoo", "cut_cross_entropy", "triton", "llama_cpp_python", "fsspec", "huggingface_hub"):
    try:
        env[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        env[name] = None
try:  # the carried llama.cpp runtime (built on another machine) loads here, or says why not
    import llama_cpp

    llama_cpp.llama_backend_init()
    env["llama_cpp_loads"] = True
except Exception as err:
    env["llama_cpp_loads"] = repr(err)
query = "name,memory.total,driver_version,compute_mode"  # compute mode: the stages share the GPU between processes
try:
    smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True)
    env["gpu"] = smi.stdout.strip() or smi.stderr.strip()
except OSError as err:
    env["gpu"] = repr(err)
open(sys.argv[1], "w").write(json.dumps(env, indent=2))
print(json.dumps(env))
EOF

log "gpu_check: $STAGES"
timeout -k 10 "$CHECK_CAP_S" "$PY" scripts/gpu_check.py --random-weights-from "$WORK/models/gemma-3-270m" \
    --out "$WORK/check" --results "$OUT/stages.jsonl" --stages "$STAGES" 2>&1 | tee -a "$OUT/run.log"
status=${PIPESTATUS[0]}
cp "$WORK/check/gpu_check.json" "$OUT/" 2>/dev/null || log "no gpu_check.json (status $status): see stages.jsonl"
tar -czf "$OUT/logs.tar.gz" -C "$WORK/check" --exclude='model-*' --exclude='*.safetensors' --exclude='*.gguf' \
    --exclude='adapter' --exclude='merged' --exclude='checkpoint-*' . 2>/dev/null
log "done (gpu_check status $status); results in $OUT"
exit "$status"
