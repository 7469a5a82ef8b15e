#!/usr/bin/env bash
# Installs the system programs talkstack runs as subprocesses (espeak-ng for lite-voice).
# Idempotent; never fails the build when it cannot install — the engine then reports
# MODEL_UNAVAILABLE with the same hint.
set -u
if command -v espeak-ng >/dev/null 2>&1; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "installing espeak-ng (apt-get)…"
  $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq espeak-ng >/dev/null && exit 0
fi
cat >&2 <<'MSG'
espeak-ng is not installed and could not be installed automatically.
The lite-voice engine needs it: apt-get install espeak-ng | brew install espeak-ng | dnf install espeak-ng
MSG
exit 0
