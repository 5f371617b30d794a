#!/usr/bin/env bash
# The test command of the README. The web page's end-to-end test needs a browser: unless
# REALJUDGE_NO_BROWSER=1, scripts/setup-test-extras.sh installs Debian's chromium system-wide with
# apt-get (as root, or through `sudo -n`) when /usr/bin/chromium is missing. Without it that one
# test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${REALJUDGE_NO_BROWSER:-0}" = "1" ]; then
  echo "scripts/test.sh: REALJUDGE_NO_BROWSER=1: no browser installed; the browser test will skip" >&2
elif [ -x scripts/setup-test-extras.sh ] && [ ! -x /usr/bin/chromium ]; then
  echo "scripts/test.sh: installing Debian's chromium system-wide through apt-get for the browser test" \
       "(REALJUDGE_NO_BROWSER=1 skips this)" >&2
  scripts/setup-test-extras.sh
fi
python -m pytest tests -q -p no:cacheprovider
