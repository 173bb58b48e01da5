#!/usr/bin/env bash
# Builds Grove and runs it on embedded defaults on loopback: for now a three-replica grove-raft
# group (the replicated store under every orchestrator tier), until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --bin grove-kv
exec "${CARGO_TARGET_DIR:-target}/debug/grove-kv" local "$@"
