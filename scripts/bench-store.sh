#!/usr/bin/env bash
# The store benchmark: grove-raft against etcd, three replicas each on loopback, fsync on.
# Release build (the numbers in docs/benchmarks.md are from it). Extra flags go to
# `grove-kv bench` (see `grove-kv bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# The whole workspace selection: a narrower one can resolve features differently and rebuild
# RocksDB (35 minutes of C++ in release).
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/grove-kv" bench "$@"
