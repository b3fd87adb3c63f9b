#!/usr/bin/env bash
# scripts/test.sh [--sanitize]: the whole test suite.
#
# Installs what is missing (scripts/deps.sh), builds (scripts/build.sh, into
# build/ or, with --sanitize, build-asan/ with ASan+UBSan under clang), then
# runs every CTest test: unit tests, fuzz-corpus replays and the integration
# tests against a private Dovecot. Prints ctest's summary; exits non-zero on
# any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_ARGS=()
for arg in "$@"; do
  case "$arg" in
    --sanitize) BUILD_ARGS+=(--sanitize) ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

bash "$ROOT/scripts/deps.sh"
BUILD_DIR=$(bash "$ROOT/scripts/build.sh" "${BUILD_ARGS[@]}" | tail -n 1)

# Sanitizer reports fail the test that triggered them; postern's reports land
# in its log, which the integration harness checks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:exitcode=23}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# leaks inside Debian's libraries, each reproduced without postern
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}"
if command -v llvm-symbolizer >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}"
fi

echo "== ctest in ${BUILD_DIR#"$ROOT"/}" >&2
cd "$BUILD_DIR"
# Integration tests are RUN_SERIAL in CMake; unit and fuzz tests run in parallel.
ctest --output-on-failure --no-tests=error -j "$(nproc 2>/dev/null || echo 2)"
