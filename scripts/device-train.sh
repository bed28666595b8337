#!/usr/bin/env bash
# Train on a lent GPU machine from a carried corpus pack, side by side, under a time budget.
#
# Run there as the device tool's command, in the repo root (docs/training.md, "Training on a
# lent machine with little disk"):
#   bash scripts/device-train.sh PACK CORPUS BUDGET_S CONFIG[=INIT] [CONFIG[=INIT] ...]
# - installs the wheels carried in .gpu/whl (scripts/device-prepare.sh fills .gpu: soundfile
#   and what it needs are not on that image);
# - unpacks PACK (python -m training.opus_pack pack ...) into CORPUS, and its recordings into
#   data/recordings;
# - trains every CONFIG at once on the one GPU with --data CORPUS, time_budget_s BUDGET_S and,
#   where given, init_from INIT (a carried checkpoint: the configs name run folders of this
#   machine's disk, which do not travel);
# - SETS: more KEY=VALUE recipe overrides for every run, space-separated (e.g.
#   "val_stream_items=0" for a pack without validation sentences); DEVICE (default cuda),
#   PYTHON (default python3), RECORDINGS (default data/recordings) and WHEELS (default
#   .gpu/whl; empty: none) may be set too: the tests run it on the CPU;
# - leaves in $OUT what may come back (8 files, 16 MiB each): per run its last epoch
#   checkpoints, as many as fit, and one logs.tar.gz with every run's log and history.json.
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n 4,5p "$0" >&2
    exit 2
fi
pack=$1 corpus=$2 budget=$3
shift 3
out=${OUT:?OUT must name the folder whose files come back}
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
recordings=${RECORDINGS:-data/recordings}
wheels=${WHEELS-.gpu/whl}
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
start=$(date +%s)
"$python" -m training.opus_pack unpack "$pack" "$corpus" --recordings "$recordings"
echo "unpacked in $(($(date +%s) - start)) s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

runs=()
pids=()
mkdir -p "$out/logs"
for spec in "$@"; do
    config=${spec%%=*}
    sets=(--set "time_budget_s=$budget")
    for extra in ${SETS:-}; do
        sets+=(--set "$extra")
    done
    if [ "$spec" != "$config" ]; then
        sets+=(--set "init_from=${spec#*=}")
    fi
    run=$("$python" -m lmukws train --config "$config" "${sets[@]}" --print-recipe |
        "$python" -c 'import json, sys; print(json.load(sys.stdin)["out"])')
    runs+=("$run")
    name=$(basename "$run")
    "$python" -m lmukws train --config "$config" --data "$corpus" --device "${DEVICE:-cuda}" \
        --no-progress \
        "${sets[@]}" >"$out/logs/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
echo "trained in $(($(date +%s) - start)) s (exit $status)"

# what comes back: 7 checkpoint files shared between the runs, then the logs
per_run=$((7 / ${#runs[@]}))
for run in "${runs[@]}"; do
    name=$(basename "$run")
    tail -n 2 "$out/logs/$name.log"
    cp "$run/history.json" "$out/logs/$name.history.json" 2>/dev/null || true
    mkdir -p "$out/$name"
    kept=$(ls "$run"/epoch-*.safetensors 2>/dev/null | sort | tail -n "$per_run" || true)
    for ckpt in ${kept:-$(ls "$run"/last.safetensors 2>/dev/null || true)}; do
        cp "$ckpt" "$out/$name/"
    done
done
tar -czf "$out/logs.tar.gz" -C "$out" logs
rm -r "$out/logs"
ls -l "$out" "$out"/*/
exit "$status"
