#!/usr/bin/env bash
# Runs Grove's whole test suite: installs what the build needs, builds, and runs every test with
# cargo-nextest (or cargo test where nextest is absent).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "test: cargo-nextest not found, using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@"
fi
