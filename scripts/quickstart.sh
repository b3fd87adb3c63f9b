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
echo "Building postern..." >&2
BUILD_DIR=$(bash "$ROOT/scripts/build.sh" | tail -n 1)
export POSTERN_SRC="$ROOT"
export POSTERN_BIN="$BUILD_DIR/postern"
export POSTERNCTL_BIN="$BUILD_DIR/posternctl"
exec python3 "$ROOT/tests/integration/harness.py" demo "$@"
