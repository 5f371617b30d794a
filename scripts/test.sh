#!/usr/bin/env bash
# The test command of the README. Extra test tools (the browser for the web page's end-to-end test)
# are installed by scripts/setup-test-extras.sh when present.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x scripts/setup-test-extras.sh ] && scripts/setup-test-extras.sh
python -m pytest tests -q -p no:cacheprovider
