#!/usr/bin/env bash
# The whole GPU run, in one command, on a box with no network: the CUDA sweep, the profiler
# cross-check, the report and a summary, written into one folder (and one archive of it).
#
#   tools/gpu-run.sh [--device cuda|cpu] [--dest DIR] [--budget SECONDS] [--shapes "N,C,H,W ..."]
#
# It uses the box's python3 as it is (PYTHON=... to choose another): on the GPU image that
# interpreter is itself a virtual environment, so a venv made from it would not see its CUDA torch,
# and ruff, mypy and submitit are not there; `make install` is not run and nothing is downloaded.
# Frameworks that are absent (TensorFlow there) become `unavailable` rows. Keras comes as wheels
# in .whl/ (see README, "The GPU run"), installed into /tmp/site when present.
#
# Sizing (an H200: 400 s by default, so that the device's 15 minutes hold the machine's start, this
# run and one short rerun): three shapes, one small (where launch latency shows) and two of
# N*C >= 4096 with planes of 32x32 and 64x64, x forward/backward/train x NCHW/NHWC x
# float32/bfloat16 = 36 cases. Each row samples for at most --max-time 0.25 s (GPU timings converge
# far sooner); most of a part's time is first calls, compiles and the float64 checks on the CPU.
# The sweep is one plan run in three parts by worker group, most important first, each under
# `timeout` with its share of the budget: normbench's kernel; PyTorch (built-ins and torch.compile,
# a compile per case); JAX, Keras and the rest. A part cut short keeps every row it wrote; `bench
# merge` makes one run of the parts.
# Then the profiler cross-check, the summary and the report; last, with what is left, the kernel's
# own tests compiled for the GPU.
#
# Output, in DEST (default $OUT when set, else results/gpu-run): gpu-run.log (everything),
# summary.txt, profiler.json, and gpu-run.tar.gz holding the results (JSONL + sidecar), the workers'
# log and the report. The archive is rewritten after every step, so a run killed midway leaves
# what it had.
set -u

# All in one function, read whole before it starts: editing the file mid-run cannot change a run.
main() {

    DEVICE=cuda
    DEST="${OUT:-results/gpu-run}"
    BUDGET=400
    SHAPES="8,3,32,32 64,64,32,32 16,320,64,64"
    PROFILE_SHAPES="8,3,32,32 16,320,64,64 64,256,56,56 64,64,112,112"
    MAX_TIME=0.25
    while [ $# -gt 0 ]; do
        case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --dest) DEST="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --shapes) SHAPES="$2"; shift 2 ;;
        --profile-shapes) PROFILE_SHAPES="$2"; shift 2 ;;
        --max-time) MAX_TIME="$2"; shift 2 ;;
        *) echo "gpu-run: unknown option '$1'; expected --device, --dest, --budget, --shapes, --profile-shapes or --max-time" >&2; exit 2 ;;
        esac
    done
    case "$BUDGET" in '' | *[!0-9]*) echo "gpu-run: bad --budget '$BUDGET'; expected whole seconds" >&2; exit 2 ;; esac

    cd "$(dirname "$0")/.." || exit 2
    PYTHON="${PYTHON:-python3}"
    mkdir -p "$DEST" || exit 2
    DEST="$(cd "$DEST" && pwd)"
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-run.XXXXXX")"
    LOG="$DEST/gpu-run.log"
    : >"$LOG"
    START=$(date +%s)
    export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

    say() { echo "[gpu-run +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
    # step NAME SECONDS CMD...: one step under a time limit, its output in the log; never stops the script
    step() {
        local name="$1" limit="$2"
        shift 2
        say "$name (limit ${limit}s): $*"
        timeout -k 20 "$limit" "$@" >>"$LOG" 2>&1
        local rc=$?
        say "$name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit: rows written so far are kept)')"
        return 0
    }
    pack() { tar -czf "$DEST/gpu-run.tar.gz.tmp" -C "$WORK" . && mv "$DEST/gpu-run.tar.gz.tmp" "$DEST/gpu-run.tar.gz"; }
    share() { echo $((BUDGET * $1 / 100)); }

    say "normbench GPU run: device $DEVICE, budget ${BUDGET}s, shapes $SHAPES, work in $WORK"
    {
        git log -1 --format='commit %H %s' 2>/dev/null || true
        nvidia-smi 2>&1 || echo "no nvidia-smi"
        grep -E 'MemTotal|MemAvailable' /proc/meminfo; nproc
        "$PYTHON" -c 'import sys; print("python", sys.version.split()[0], sys.executable)'
    } >>"$LOG" 2>&1

    if ls .whl/*.whl >/dev/null 2>&1; then
        say "installing the carried wheels (.whl/) into /tmp/site"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 &&
            export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    KERAS_BACKEND=jax "$PYTHON" - >>"$LOG" 2>&1 <<'EOF'
import importlib
for name in ("torch", "triton", "jax", "keras", "tensorflow", "numba", "numpy", "pandas", "matplotlib", "jinja2"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as exc:  # an absent framework is a row of its own later, not a failure here
        print(f"{name} absent: {type(exc).__name__}: {exc}")
import torch
print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

    common=(--device "$DEVICE" --mode forward --mode backward --mode train --layout NCHW --layout NHWC
        --dtype float32 --dtype bfloat16 --max-time "$MAX_TIME" --preset quick --edge)
    for s in $SHAPES; do common+=(--shape "$s"); done
    # A fresh VM's MemTotal can start far below what it grows to: give the limit, not 80 % of MemTotal.
    [ "${DEVICE%%:*}" = cuda ] && common+=(--max-memory 64G)

    # One plan, measured in parts by worker group, most important first, each under `timeout` with
    # its share of the budget (within one `bench run` groups go in label order, torch before
    # triton): normbench's kernel; PyTorch (its built-ins and torch.compile); the rest. Parts of one
    # plan share its identity, so `bench merge` makes one run of them, as of a cluster's jobs.
    step "sweep A (triton)" "$(share 18)" "$PYTHON" -m bench run "${common[@]}" --group 'triton/*' \
        --out "$WORK/part-a.jsonl"
    pack
    step "sweep B (PyTorch: built-ins, torch.compile)" "$(share 40)" "$PYTHON" -m bench run "${common[@]}" \
        --group 'torch/*' --out "$WORK/part-b.jsonl"
    pack
    # JAX, Keras on its jax and torch backends; TensorFlow and NumPy are unavailable rows on a CUDA
    # device or a box without them.
    step "sweep C (JAX, Keras, the rest)" "$(share 20)" "$PYTHON" -m bench run "${common[@]}" \
        --group 'jax/*' --group 'keras-*' --group 'tensorflow/*' --group 'numpy/*' --out "$WORK/part-c.jsonl"
    pack

    parts=()
    for p in "$WORK"/part-*.jsonl; do [ -s "$p" ] && parts+=("$p"); done
    RESULTS="$WORK/gpu.jsonl"
    if [ ${#parts[@]} -gt 0 ]; then
        step "merge" 60 "$PYTHON" -m bench merge "$RESULTS" "${parts[@]}"
    fi

    if [ "${DEVICE%%:*}" = cuda ]; then
        pshapes=()
        for s in $PROFILE_SHAPES; do pshapes+=(--shape "$s"); done
        step "profiler agreement" "$(share 10)" "$PYTHON" benchmarks/profiler_agreement.py "${pshapes[@]}" \
            --json "$WORK/profiler.json"
        cp "$WORK/profiler.json" "$DEST/" 2>/dev/null
    else
        say "profiler agreement: skipped (needs a CUDA device)"
    fi
    pack

    if [ -s "$RESULTS" ]; then
        step "summary" 60 "$PYTHON" tools/gpu_summary.py "$RESULTS" --json "$WORK/summary.json"
        "$PYTHON" tools/gpu_summary.py "$RESULTS" >"$DEST/summary.txt" 2>&1
    fi
    pack
    # The report comes last but one: it can be made again anywhere from the results alone.
    left=$((BUDGET - ($(date +%s) - START)))
    if [ -s "$RESULTS" ]; then
        step "report" "$((left > 60 ? left : 60))" "$PYTHON" -m bench report "$RESULTS" --out "$WORK/report"
        pack
    fi

    # Last, with what is left of the budget: the triton kernel's own tests, compiled for this GPU
    # (on a CPU they run in Triton's interpreter, in `make test`).
    left=$((BUDGET - ($(date +%s) - START)))
    if [ "${DEVICE%%:*}" = cuda ] && [ "$left" -gt 30 ]; then
        step "triton_fused tests on the GPU" "$left" env NORMBENCH_TEST_DEVICE=cuda "$PYTHON" -m pytest -q -x -p no:cacheprovider tests/test_triton_fused.py
    fi
    say "done in $(($(date +%s) - START)) s: $DEST/gpu-run.tar.gz ($(du -h "$DEST/gpu-run.tar.gz" | cut -f1))"
    cat "$DEST/summary.txt" 2>/dev/null
    grep -h "largest disagreement" "$LOG" | tail -1
}

main "$@"; exit $?
