#!/usr/bin/env bash
# scripts/build.sh [--sanitize] [--clang] [--no-fuzz]: configure and build postern.
#
#   (default)    gcc, RelWithDebInfo, into build/
#   --clang      clang instead of gcc (same directory unless --sanitize)
#   --sanitize   clang with ASan+UBSan, into build-asan/; fuzz targets are
#                libFuzzer binaries there (GW_FUZZ=ON), so CTest runs each
#                briefly instead of only replaying its corpus
#   --no-fuzz    with --sanitize: fuzz targets only replay their corpus
#
# Build output goes to stderr; stdout gets only the build directory's path.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sanitize=0
use_clang=0
fuzz=1
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    --clang) use_clang=1 ;;
    --no-fuzz) fuzz=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

BUILD_DIR="$ROOT/build"
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
CC_WANT=gcc
if [ "$use_clang" = 1 ]; then
  CC_WANT=clang
fi
if [ "$sanitize" = 1 ]; then
  BUILD_DIR="$ROOT/build-asan"
  CC_WANT=clang
  CMAKE_ARGS+=(-DGW_ASAN=ON -DGW_UBSAN=ON)
  if [ "$fuzz" = 1 ]; then
    CMAKE_ARGS+=(-DGW_FUZZ=ON)
  else
    CMAKE_ARGS+=(-DGW_FUZZ=OFF)
  fi
fi

# A build directory configured with another compiler is reconfigured from
# scratch rather than failing half-way; an existing one keeps its generator.
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cached_cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  want_real=$(readlink -f "$(command -v "$CC_WANT")")
  if [ "$(readlink -f "$cached_cc")" != "$want_real" ]; then
    rm -rf "$BUILD_DIR"
  fi
fi
GENERATOR=()
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
  GENERATOR=(-G Ninja)
fi

jobs=$(nproc 2>/dev/null || echo 2)
CC="$CC_WANT" cmake -S "$ROOT" -B "$BUILD_DIR" "${GENERATOR[@]}" "${CMAKE_ARGS[@]}" \
  -DCMAKE_C_COMPILER="$CC_WANT" >&2
cmake --build "$BUILD_DIR" --parallel "$jobs" >&2
echo "$BUILD_DIR"
