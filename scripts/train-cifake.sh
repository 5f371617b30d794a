#!/usr/bin/env bash
# The shipped CIFAKE detectors, end to end on one machine (docs/CIFAKE.md; `--resume` continues a killed step):
#   runs/cifake-a/bundle  the first member (the previous shipped `cifake`): configs/cifake-resnet.json, then
#                         configs/cifake-resnet-finetune.json from its bundle
#   runs/cifake-b/bundle  the second member: configs/cifake-resnet-b.json
#   runs/cifake-accurate  their ensemble, calibrated on validation  -> shipped `cifake-accurate`
#   runs/cifake-fast      the fast student distilled from it          -> shipped `cifake`
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
if [ ! -f runs/cifake-accurate/bundle/bundle.json ]; then
  realjudge ensemble runs/cifake-a/bundle runs/cifake-b/bundle --out runs/cifake-accurate/bundle \
    --name cifake-accurate --card configs/cifake-accurate-card.json
fi
step runs/cifake-fast configs/cifake-fast.json
