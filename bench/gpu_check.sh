#!/usr/bin/env bash
# The GPU issue's measurements, in one prepared command (bench/README.md, "GPU").
#   On the device machine (torch there, no Streamlit):   bash bench/gpu_check.sh
#   Dry run here on the CPU with tiny sizes:              DEVICE=cpu QUICK=1 bash bench/gpu_check.sh
# Figures land in $OUT (the device tool's folder) or bench/results/gpu/, one JSON per part,
# and train-<card>-<date>.json with the fields bench/figures/ keeps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[[ -x .venv/bin/python && -z "${OUT:-}" ]] && PY=.venv/bin/python
DEV=${DEVICE:-cuda}
DEST=${OUT:-bench/results/gpu}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
q=(); big=(--images 4000 --size 256 --input 224 --batch 256 --epochs 12 --target 0.9)
if [[ -n "${QUICK:-}" ]]; then q=(--quick); big=(--images 64 --size 32 --input 32 --batch 16 --epochs 2); fi
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

echo "== 1. training like for like (bench/README.md, bench_train.py): tutorial, tuned, ours_fp32, ours_bf16 from the"
echo "      same JPEG files; ours_cached; ceiling_fp32, ceiling_bf16; frozen. ResNet-18, one split, one recipe"
"$PY" bench/bench_train.py "${big[@]}" --device "$DEV" --json-out "$DEST/train.json" 2>&1 | tee "$DEST/train.log"

echo "== 2. the Studio's headless path, every scenario"
size=128; n=100; [[ -n "${QUICK:-}" ]] && size=32 && n=20
for s in 1 2 3 finetune; do
  "$PY" -m core train --dataset shapes --shapes-classes 8 --shapes-per-class $n --image-size $size --weights random \
    --scenario $s --epochs 3 --batch-size 128 --device "$DEV" --json 2>&1 | tail -1 | sed "s/^/scenario $s: /"
done | tee "$DEST/scenarios.log"

echo "== 2b. two jobs at once through the runner; memory after each; the forced out-of-memory retry"
"$PY" bench/bench_gpu_jobs.py --device "$DEV" "${q[@]}" --json-out "$DEST/jobs.json" 2>&1 | tail -60

echo "== 3. the Training Lab's default runs"
"$PY" bench/bench_lab.py --device "$DEV" "${q[@]}" --ae-widths 2,49 --json-out "$DEST/lab.json" 2>&1 | tee "$DEST/lab.log"

"$PY" - "$DEST" <<'PY'
import json, sys, datetime, pathlib
d = pathlib.Path(sys.argv[1]); t = json.loads((d / "train.json").read_text())
card = t["device"].replace(" ", "-").replace(",", "")
(d / f"train-{card}-{datetime.date.today()}.json").write_text(json.dumps(t, indent=1))
print("wrote", d / f"train-{card}-{datetime.date.today()}.json")
PY
