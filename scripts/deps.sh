#!/usr/bin/env bash
# scripts/deps.sh: install the Debian 12 packages postern needs to build,
# test and run its demo, and nothing else. Idempotent: when everything is
# already installed it only asks dpkg and exits (no apt-get update).
#
# The list below is the one place that names the packages; README.md
# explains each one.
set -euo pipefail

PACKAGES=(
  # build
  cmake make gcc clang pkg-config
  libuv1-dev libssl-dev libxml2-dev liblmdb-dev
  libconfig-dev libjansson-dev libcmocka-dev
  # incoming rules: MIME (GMime), regex (PCRE2), Unicode case folding and
  # NFC (libunistring), IDN domains (libidn2)
  libgmime-3.0-dev libpcre2-dev libunistring-dev libidn2-dev
  # incoming rules, content analyzers: HTML (libxml2, above), language
  # (libexttextcat with its n-gram data), originating country (libloc with
  # the IPFire location database), Office macros (libgsf), malware (clamd,
  # started by the tests with the project's own tiny signature file)
  libexttextcat-dev libexttextcat-data libloc-dev libloc-database libgsf-1-dev
  zlib1g-dev
  clamav-daemon
  # sanitizers and fuzzing with clang; llvm for llvm-symbolizer (readable
  # ASan stack traces)
  libclang-rt-14-dev llvm
  # integration tests and the quick start: a private Dovecot, real clients
  dovecot-core dovecot-imapd dovecot-pop3d
  openssl curl python3 lmdb-utils libwbxml2-utils
  # delivery (LMTP) tests: Dovecot's LMTP server, a real Postfix in front
  dovecot-lmtpd postfix
  # incoming rules: "move to spam" files into Junk through a sieve_before
  # script (Pigeonhole)
  dovecot-sieve
  # submission tests: Dovecot's submission service; swaks (its TLS needs
  # Net::SSLeay)
  dovecot-submissiond swaks libnet-ssleay-perl
  # ActiveSync tests: a real SOGo EAS server with its stack
  # (tests/integration/sogo/start-sogo-eas.sh)
  sogo sogo-activesync memcached postgresql python3-aiosmtpd nginx
  ca-certificates procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${missing[*]}" >&2

# Installing dovecot-core starts the system's Dovecot by default. postern's
# tests and demo run their own Dovecot, so forbid service starts while we
# install -- but only with a policy-rc.d of our own, left in place if the
# machine already has one.
POLICY_RC=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if [ "$created_policy" = 1 ]; then
    "${SUDO[@]}" rm -f "$POLICY_RC"
  fi
}
trap cleanup EXIT
if [ ! -e "$POLICY_RC" ]; then
  printf '#!/bin/sh\n# temporary, from postern scripts/deps.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY_RC"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
echo "deps.sh: done" >&2
