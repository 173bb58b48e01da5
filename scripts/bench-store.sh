#!/usr/bin/env bash
# The store benchmark: grove-raft against etcd, three replicas each on loopback, fsync on.
# Release build (the numbers in docs/benchmarks.md are from it). Extra flags go to
# `grove-kv bench` (see `grove-kv bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --bin grove-kv
exec "${CARGO_TARGET_DIR:-target}/release/grove-kv" bench "$@"
