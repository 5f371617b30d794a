#!/usr/bin/env bash
# Extra tools for the test suite, installed as root before pytest (locally and in CI):
# Debian's chromium for the web page's end-to-end test (tests/test_serve_browser.py), driven by
# Playwright with executable_path; `playwright install` is never used (it downloads its own browser).
# A machine without apt only loses that one test, which then skips and says why.
set -uo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-test-extras: warning: apt-get not found; /usr/bin/chromium is missing, the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
  echo "setup-test-extras: warning: not root and no sudo; cannot install chromium, the browser test will be skipped" >&2
  exit 0
fi
log=$(mktemp)
if $SUDO apt-get update -qq >"$log" 2>&1 && $SUDO apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
  echo "setup-test-extras: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
else
  echo "setup-test-extras: warning: could not install chromium (last lines below); the browser test will be skipped" >&2
  tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
