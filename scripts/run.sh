#!/usr/bin/env bash
# Builds Grove and runs it on embedded defaults, on loopback, until Ctrl-C: three grove-root
# replicas, two clusters of three grove-cluster replicas, two grove-workers on this machine's
# containerd (see grove-local --help; extra flags are passed on, e.g. --clean or --workers 0).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build -p grove-root -p grove-cluster -p grove-worker -p grove-cli -p grove-local --bins
# The example application's image, built here and imported into the workers' containerd
# namespaces (no registry needed).
./scripts/example-image.sh || echo "run: the example image could not be prepared; examples/hello.json will not start" >&2
exec "${CARGO_TARGET_DIR:-target}/debug/grove-local" "$@"
