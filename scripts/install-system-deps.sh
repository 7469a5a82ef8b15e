#!/usr/bin/env bash
# Installs the system programs talkstack runs as subprocesses and the test suite needs:
# espeak-ng (the lite-voice engine); curl and jq (the quick start's curl step, which the docs test
# runs as written). Idempotent. Exits non-zero, naming the package and the command
# that installs it, when one is still missing after the attempt: `make test` then stops here
# instead of running a suite whose lite-voice tests cannot pass.
# (ffmpeg is not one: talkstack runs the binary the imageio-ffmpeg wheel ships, and reads MP4s with
# PyAV. Node/npm are checked by the Makefile targets that need them.)
set -u
REQUIRED=(espeak-ng curl jq)

missing() {
  local program
  for program in "${REQUIRED[@]}"; do
    command -v "$program" >/dev/null 2>&1 || echo "$program"
  done
}

todo=$(missing)
if [ -z "$todo" ]; then exit 0; fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "installing $(echo $todo) (apt-get)…"
  # shellcheck disable=SC2086  # one word per package
  $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq $todo >/dev/null
fi

todo=$(missing)
if [ -z "$todo" ]; then exit 0; fi
for program in $todo; do
  cat >&2 <<MSG
$program is not installed and could not be installed here (no apt-get, or no root/sudo).
Install it, then run make test again: sudo apt-get install -y $program | brew install $program | dnf install $program
MSG
done
exit 1
