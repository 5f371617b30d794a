#!/usr/bin/env bash
# The shipped CIFAKE detectors, end to end on one machine (docs/CIFAKE.md; `--resume` continues a killed step):
#   runs/cifake-a/bundle  configs/cifake-resnet.json, then configs/cifake-resnet-finetune.json from its bundle
#                         -> shipped `cifake-accurate` (the best validation accuracy of the candidates)
#   runs/cifake-b/bundle  a second network: configs/cifake-resnet-b.json
#   runs/cifake-ensemble  the mean of the two, calibrated on validation: the teacher
#   runs/cifake-fast      the fast student distilled from it           -> shipped `cifake`
# Shipping (copy, rename cifake-a to cifake-accurate) and the figures: docs/CIFAKE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
step() {  # step RUN_DIR CONFIG: train, or continue a run that was interrupted
  if [ -f "$1/bundle/bundle.json" ]; then return; fi
  if [ -f "$1/checkpoint.json" ]; then realjudge train --config "$2" --run-dir "$1" --resume
  else realjudge train --config "$2" --run-dir "$1"; fi
}
if [ ! -f runs/cifake-a/bundle/bundle.json ]; then
  step runs/cifake-resnet-v2 configs/cifake-resnet.json
  step runs/cifake-a configs/cifake-resnet-finetune.json
fi
step runs/cifake-b configs/cifake-resnet-b.json
if [ ! -f runs/cifake-ensemble/bundle/bundle.json ]; then
  realjudge ensemble runs/cifake-a/bundle runs/cifake-b/bundle --out runs/cifake-ensemble/bundle \
    --name cifake-ensemble --card configs/cifake-ensemble-card.json
fi
step runs/cifake-fast configs/cifake-fast.json
# A candidate for benchmarks/cifake_speed.py: the accurate network on one view, recalibrated on validation.
if [ ! -f runs/cifake-a-1view/bundle.json ]; then
  realjudge calibrate runs/cifake-a/bundle --views none --out runs/cifake-a-1view
fi
