#!/usr/bin/env bash
# scripts/quickstart.sh: try postern on this machine in one command.
#
# Installs what is missing, builds, starts a private Dovecot (its own config
# and files under /tmp/postern-demo, 127.0.0.1, high ports; the system's
# Dovecot is not touched) with demo users and a demo message, loads the demo
# policy, and runs postern in the foreground in front of it:
#   IMAP 127.0.0.1:10143 (STARTTLS)  IMAPS 127.0.0.1:10993
#   POP3 127.0.0.1:10110 (STLS)      POP3S 127.0.0.1:10995
#   admin http://127.0.0.1:18025/healthz and /metrics
# It prints how to connect. Ctrl-C stops everything.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/deps.sh"
LOG="$ROOT/build/quickstart-build.log"
mkdir -p "$ROOT/build"
echo "Building postern (log: build/quickstart-build.log)..." >&2
if ! BUILD_DIR=$(bash "$ROOT/scripts/build.sh" 2>"$LOG" | tail -n 1); then
  tail -n 40 "$LOG" >&2
  echo "quickstart: the build failed; see $LOG" >&2
  exit 1
fi
export POSTERN_SRC="$ROOT"
export POSTERN_BIN="$BUILD_DIR/postern"
export POSTERNCTL_BIN="$BUILD_DIR/posternctl"
exec python3 "$ROOT/tests/integration/harness.py" demo "$@"
