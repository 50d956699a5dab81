#!/usr/bin/env bash
# Regenerate results/ from an empty cache and store: every built-in refiner x both tasks x 3 seeds, then the report.
#
#   bash results/regenerate.sh                  # quick budget, seeds 0,1,2, real-eyes columns if ../shared is there
#   BUDGET=smoke SEEDS=0 OUT=/tmp/r bash results/regenerate.sh   # a check of the whole chain in minutes
#
# Where ../shared/real-eyes holds the real crops (they are never copied into results/), the gaze runs are also
# scored on the real labeled Columbia eyes of subjects 0010-0024 (--real-test: the real/ columns), an oracle
# trained on labeled real crops of subjects 0001-0009 is the real reference row, a SimGAN is fitted to real
# MPIIGaze crops of group A (files 0000-1498), and every gaze run's refined test images are judged against the
# real crops of group B (1500-2998) too (--real-images: the real_realism/ columns; the real oracle's row judges
# real Columbia crops against them, a bar from real images). Without it, the tables have the stand-in columns
# only. The work folder (cache and store) stays outside results/.
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
mkdir -p "$WORK" "$OUT"
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
  GROUP_A="folder:$REAL_EYES/mpiigaze?files=0*,1[0-4]*"
  GROUP_B="folder:$REAL_EYES/mpiigaze?files=1[5-9]*,2*"
  REAL_COLUMNS=(--real-test "$COLUMBIA&split=test&files=00[12]*" --real-images "$GROUP_B")
else
  echo "regenerate.sh: no $REAL_EYES/columbia and mpiigaze; the gaze table gets no real-eyes columns" >&2
  REAL_COLUMNS=()
fi

s2r-bench sweep --tasks gaze --refiners all "${COMMON[@]}" "${REAL_COLUMNS[@]}"
s2r-bench sweep --tasks gaze --refiners sdedit --set refiner.ilvr_factor=4 "${COMMON[@]}" "${REAL_COLUMNS[@]}"
stage "gaze sweep"
if [ ${#REAL_COLUMNS[@]} -gt 0 ]; then
  s2r-bench sweep --tasks gaze --refiners oracle --target "$COLUMBIA&split=train&files=000*" --target-test webcam-eyes \
    "${COMMON[@]}" "${REAL_COLUMNS[@]}"
  s2r-bench sweep --tasks gaze --refiners simgan --target "$GROUP_A" --target-test webcam-eyes \
    "${COMMON[@]}" "${REAL_COLUMNS[@]}"
  stage "real references"
fi

s2r-bench report --experiment results --tracking-uri "$STORE" --budget "$BUDGET" --out "$OUT"
s2r-bench report --experiment results --tracking-uri "$STORE" --budget "$BUDGET" --format html --out "$OUT"
stage "report"
