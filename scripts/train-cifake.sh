#!/usr/bin/env bash
# The shipped CIFAKE detectors, end to end on one machine (docs/CIFAKE.md; `--resume` continues a killed step):
#   runs/cifake-a/bundle    configs/cifake-resnet.json, then configs/cifake-resnet-finetune.json from its bundle
#   runs/cifake-a2/bundle   configs/cifake-resnet-finetune2.json: 12 more epochs from runs/cifake-a/bundle
#   runs/cifake-shipped/    its network recalibrated on validation for the model step in bfloat16:
#     cifake-accurate       on its six test-time views                    -> shipped `cifake-accurate`
#     cifake                on the image and its mirror                   -> shipped `cifake` (the default)
#   runs/cifake-b/bundle    a second network: configs/cifake-resnet-b.json
#   runs/cifake-ensemble    the mean of the two, calibrated on validation: a teacher
#   runs/cifake-fast        a small student distilled from it (the default until bfloat16 made the accurate one fast)
# Shipping (copy runs/cifake-shipped/* to src/realjudge/shipped/) and the figures: docs/CIFAKE.md.
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
step runs/cifake-a2 configs/cifake-resnet-finetune2.json
for views in bundle mirror; do  # the shipped pair: calibrated for bfloat16 (on a CPU without it: float32, with a note)
  name=$([ "$views" = mirror ] && echo cifake || echo cifake-accurate)
  if [ ! -f "runs/cifake-shipped/$name/bundle.json" ]; then
    realjudge calibrate runs/cifake-a2/bundle --views "$views" --precision bfloat16 --name "$name" \
      --card "configs/$name-card.json" --out "runs/cifake-shipped/$name"
  fi
done
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
