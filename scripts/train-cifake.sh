#!/usr/bin/env bash
# The shipped CIFAKE detectors, end to end on one machine (docs/CIFAKE.md; `--resume` continues a killed step):
#   runs/cifake-a/bundle    configs/cifake-resnet.json, then configs/cifake-resnet-finetune.json from its bundle
#   runs/cifake-a2/bundle   configs/cifake-resnet-finetune2.json: 12 more epochs from runs/cifake-a/bundle
#   runs/cifake-effnet/bundle     configs/cifake-effnet.json: ImageNet EfficientNet-Lite0, 11 blocks (a sweep candidate)
#   runs/cifake-effnet-s1/bundle  configs/cifake-effnet-s1.json: the same with its stem at stride 1
#   runs/cifake-ens-as1     the mean of runs/cifake-a2 and runs/cifake-effnet-s1 (`realjudge ensemble`)
#   runs/cifake-shipped/    recalibrated on validation, on the image and its mirror, for the model step in bfloat16:
#     cifake                runs/cifake-a2's network                      -> shipped `cifake` (the default)
#     cifake-accurate       runs/cifake-ens-as1                           -> shipped `cifake-accurate`
#   (benchmarks/ensemble_sweep.py chose the members and views of cifake-accurate on validation.)
#   runs/cifake-distilled   configs/cifake-resnet-distill.json: the ResNet distilled from runs/cifake-ens-as1 (a measured lever, not shipped)
#   runs/distilled-bf16, runs/pair-1view-bf16   it, and the pair on one view, calibrated as shipped: cifake_speed candidates
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
step runs/cifake-effnet configs/cifake-effnet.json
step runs/cifake-effnet-s1 configs/cifake-effnet-s1.json
if [ ! -f runs/cifake-ens-as1/bundle.json ]; then
  realjudge ensemble runs/cifake-a2/bundle runs/cifake-effnet-s1/bundle --out runs/cifake-ens-as1 --name cifake-accurate
fi
# The shipped pair: calibrated for bfloat16 (on a CPU without it: float32, with a note).
for name in cifake cifake-accurate; do
  from=$([ "$name" = cifake ] && echo runs/cifake-a2/bundle || echo runs/cifake-ens-as1)
  if [ ! -f "runs/cifake-shipped/$name/bundle.json" ]; then
    realjudge calibrate "$from" --views mirror --precision bfloat16 --name "$name" \
      --card "configs/$name-card.json" --out "runs/cifake-shipped/$name"
  fi
done
step runs/cifake-distilled configs/cifake-resnet-distill.json
if [ ! -f runs/distilled-bf16/bundle.json ]; then
  realjudge calibrate runs/cifake-distilled/bundle --views mirror --precision bfloat16 --out runs/distilled-bf16
fi
if [ ! -f runs/pair-1view-bf16/bundle.json ]; then
  realjudge calibrate runs/cifake-ens-as1 --views none --precision bfloat16 --out runs/pair-1view-bf16
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
