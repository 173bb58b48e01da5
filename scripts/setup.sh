#!/usr/bin/env bash
# Installs the system packages Grove's build, tests and benchmarks need, when they are missing:
#   protobuf-compiler  protoc, for containerd-client's and Grove's .proto files
#   libclang-dev       bindgen, for RocksDB's bindings
#   etcd-server        the peer the store benchmark compares against
#   busybox-static     the example image, and ping in the network-namespace test
#   iproute2 iptables  network namespaces and partitions for the chaos harness
# Safe to run repeatedly; it only calls apt-get when something is missing.
set -euo pipefail

packages=(protobuf-compiler libclang-dev etcd-server busybox-static iproute2 iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
