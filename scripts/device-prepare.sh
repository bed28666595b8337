#!/usr/bin/env bash
# Here, before training on a lent GPU machine: fill .gpu/ (ignored by git; name it in the
# device call's carry) with what scripts/device-train.sh needs there, and say whether the
# call fits the 64 MiB that travel (docs/training.md, "Training on a lent machine with
# little disk").
#
#   scripts/device-prepare.sh CORPUS [INIT_CHECKPOINT ...] [-- PACK_OPTION ...]
#   scripts/device-prepare.sh --check      # only the size that would travel now
#   scripts/device-prepare.sh --set-aside  # remove the committed checkpoints and reports
#   scripts/device-prepare.sh --restore    # and bring them back from git after the call
#
# - .gpu/whl: wheels of soundfile and what it needs, for that image's Python 3.12 (the
#   image has torch, numpy, scipy, safetensors, tqdm and matplotlib, not soundfile);
# - .gpu/pack: CORPUS's train and validation audio and data/recordings' training speech in
#   one Opus stream (python -m training.opus_pack pack; PACK_OPTIONs such as
#   --recordings-hours 1 --continuous-splits train make it smaller);
# - .gpu/init: the checkpoints the runs start from (CONFIG=.gpu/init/NAME in device-train.sh).
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n 7,8p "$0" >&2
    exit 2
fi
python=${PYTHON:-.venv/bin/python}
# the committed files a training call does not need: ~58 of the tree's ~60 MiB
aside=(reports models/checkpoints/reports 'models/checkpoints/*.safetensors')
case "$1" in
--set-aside)
    if ! git diff --quiet HEAD -- "${aside[@]}"; then
        echo "commit or drop the changes under reports/ and models/checkpoints/ first:" \
            "--restore brings back what HEAD holds" >&2
        exit 1
    fi
    git ls-files -z -- "${aside[@]}" | xargs -0 rm --
    echo "set aside; bring them back with: $0 --restore"
    set -- --check
    ;;
--restore)
    git checkout -- reports models/checkpoints
    git status --short -- reports models/checkpoints
    exit 0
    ;;
esac
corpus=$1
shift
if [ "$corpus" = "--check" ]; then
    corpus=""
fi
inits=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    inits+=("$1")
    shift
done
[ $# -gt 0 ] && shift # the "--"
if [ -n "$corpus" ]; then
    rm -rf .gpu
    mkdir -p .gpu/whl .gpu/init
    version() { "$python" -m pip show "$1" | sed -n 's/^Version: //p'; }
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl "soundfile==$(version soundfile)" \
        "cffi==$(version cffi)" "pycparser==$(version pycparser)"
    "$python" -m training.opus_pack pack "$corpus" .gpu/pack --recordings data/recordings "$@"
    for init in "${inits[@]}"; do
        cp "$init" .gpu/init/
    done
fi
"$python" - <<'EOF'
import subprocess
from pathlib import Path

MIB = 2**20
files = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    capture_output=True, check=True,
).stdout.decode().split("\0")
tree = [Path(f) for f in files if f and Path(f).is_file()]
tree_bytes = sum(p.stat().st_size for p in tree)
carry = sum(p.stat().st_size for p in Path(".gpu").rglob("*") if p.is_file())
total = (tree_bytes + carry) / MIB
print(f"travels: working tree {tree_bytes / MIB:.1f} MiB + .gpu {carry / MIB:.1f} MiB "
      f"= {total:.1f} MiB of 64")
if total > 64:
    by_folder: dict[str, int] = {}
    for p in tree:
        key = "/".join(p.parts[:2]) if len(p.parts) > 2 else p.parts[0]
        by_folder[key] = by_folder.get(key, 0) + p.stat().st_size
    big = sorted(by_folder.items(), key=lambda kv: -kv[1])[:5]
    print("too much: set committed files aside for the call (docs/training.md), largest: "
          + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in big))
    raise SystemExit(1)
EOF
