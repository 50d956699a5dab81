#!/usr/bin/env bash
# Regenerate results/ from an empty cache and store: every built-in refiner x both tasks x 3 seeds, then the report.
#
#   bash results/regenerate.sh                  # quick budget, seeds 0,1,2, real-eyes columns if ../shared is there
#   BUDGET=smoke SEEDS=0 OUT=/tmp/r bash results/regenerate.sh   # a check of the whole chain in minutes
#
# Where ../shared/real-eyes holds the real crops (they are never copied into results/), the gaze runs are also
# scored on the real labeled Columbia eyes of subjects 0010-0024 (--real-test: the real/ columns), an oracle
# trained on labeled real crops of subjects 0001-0009 is the real reference row, a SimGAN is fitted to real
# MPIIGaze crops of group A (files 0000-1498), and the refined images of every refiner are judged against the
# real crops of group B (1500-2998) beside group A as the real reference (realism-vs-real.md). Without it, the
# tables have the stand-in columns only. The work folder (cache, store, exports, realism reports with their
# sample grids of real crops) stays outside results/.
set -euo pipefail

BUDGET=${BUDGET:-quick}
SEEDS=${SEEDS:-0,1,2}
OUT=${OUT:-results}
WORK=${WORK:-regenerate-work}
SHARED=${SHARED:-../shared}
if [ -e "$WORK" ] && [ -n "$(ls -A "$WORK")" ]; then
  echo "regenerate.sh: work folder $WORK is not empty; remove it or set WORK= to a new folder (results come from an empty cache and store)" >&2
  exit 2
fi
mkdir -p "$WORK/exports" "$WORK/realism" "$OUT"
export S2R_BENCH_CACHE="$WORK/cache"
STORE="sqlite:///$WORK/results.db"
COMMON=(--budget "$BUDGET" --seeds "$SEEDS" --experiment results --tracking-uri "$STORE" --no-progress)
start=$SECONDS
stage() { echo "regenerate.sh: $1 done at $((SECONDS - start)) s" >&2; }

s2r-bench sweep --tasks hand --refiners all "${COMMON[@]}"
stage "hand sweep"

REAL_EYES="$SHARED/real-eyes"
if [ -d "$REAL_EYES/columbia" ] && [ -d "$REAL_EYES/mpiigaze" ]; then
  COLUMBIA="folder:$REAL_EYES/columbia?crop=0,13,64,51&size=55x35&channels=1"
  REAL_TEST=(--real-test "$COLUMBIA&split=test&files=00[12]*")
  GROUP_A="folder:$REAL_EYES/mpiigaze?files=0*,1[0-4]*"
  GROUP_B="folder:$REAL_EYES/mpiigaze?files=1[5-9]*,2*"
else
  echo "regenerate.sh: no $REAL_EYES/columbia and mpiigaze; the gaze table gets no real-eyes columns" >&2
  REAL_TEST=()
fi

s2r-bench sweep --tasks gaze --refiners all "${COMMON[@]}" "${REAL_TEST[@]}"
s2r-bench sweep --tasks gaze --refiners sdedit --set refiner.ilvr_factor=4 "${COMMON[@]}" "${REAL_TEST[@]}"
stage "gaze sweep"
if [ ${#REAL_TEST[@]} -gt 0 ]; then
  s2r-bench sweep --tasks gaze --refiners oracle --target "$COLUMBIA&split=train&files=000*" --target-test webcam-eyes \
    "${COMMON[@]}" "${REAL_TEST[@]}"
  s2r-bench sweep --tasks gaze --refiners simgan --target "$GROUP_A" --target-test webcam-eyes \
    "${COMMON[@]}" "${REAL_TEST[@]}"
  stage "real references"
  for refiner in none histmatch randomize fda simgan cyclegan cut unsb sdedit; do
    s2r-bench refine --refiner "$refiner" --task gaze --seed 0 --budget "$BUDGET" --limit 2000 \
      --out "$WORK/exports/$refiner" --tracking-uri "$STORE" --no-progress
    s2r-bench realism "folder:$WORK/exports/$refiner" --real "$GROUP_B" --reference "$GROUP_A" --seeds 0,1,2 \
      --out "$WORK/realism/$refiner"
  done
  python - "$WORK"/realism/*/realism.json > "$OUT/realism-vs-real.md" <<'PY'
import json, sys
from pathlib import Path

cell = lambda m, d: f"{m['mean']:.{d}f}" + ("" if m["se"] is None else f" ± {m['se']:.{d}f}")
print("# Realism of each refiner's export against real crops\n")
print("Made by `results/regenerate.sh`: the first 2,000 refined training images of seed 0 against real MPIIGaze "
      "crops of group B, with group A judged against the same crops as the real reference (seeds 0-2).\n")
print("| refiner | two-sample test, % | KID | layout test, % | real reference: two-sample test, % | KID |")
print("|---|---|---|---|---|---|")
for path in map(Path, sys.argv[1:]):
    f = json.loads(path.read_text())
    r = f["reference"]
    print(f"| {path.parent.name} | {cell(f['classifier_accuracy'], 1)} | {cell(f['kid'], 4)} | "
          f"{cell(f['layout_accuracy'], 1)} | {cell(r['classifier_accuracy'], 1)} | {cell(r['kid'], 4)} |")
PY
  stage "realism against real crops"
fi

s2r-bench report --experiment results --tracking-uri "$STORE" --budget "$BUDGET" --out "$OUT"
s2r-bench report --experiment results --tracking-uri "$STORE" --budget "$BUDGET" --format html --out "$OUT"
stage "report"
