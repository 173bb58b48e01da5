#!/usr/bin/env bash
# Builds the example image grove.local/hello:1 (a static busybox, nothing else) without any
# registry, and imports it into the containerd namespaces of the local topology's workers, so
# examples/hello.json runs a real container on a machine that cannot pull images.
#
#   scripts/example-image.sh [namespace ...]    (default: grove-local-w1 grove-local-w2)
#
# Needs busybox-static (scripts/setup.sh installs it), `ctr` and a containerd socket; the image
# is assembled as an OCI archive by hand (no Docker daemon needed).
set -euo pipefail
cd "$(dirname "$0")/.."

image=grove.local/hello:1
namespaces=("$@")
[ ${#namespaces[@]} -gt 0 ] || namespaces=(grove-local-w1 grove-local-w2)

socket=""
for s in /run/containerd/containerd.sock /var/run/docker/containerd/containerd.sock; do
  if [ -S "$s" ]; then socket=$s; break; fi
done
if [ -z "$socket" ]; then
  echo "example-image: no containerd socket; skipping (workers cannot run containers here)" >&2
  exit 0
fi
command -v ctr >/dev/null || { echo "example-image: ctr is missing (it comes with containerd)" >&2; exit 1; }
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "example-image: $busybox is missing (scripts/setup.sh installs busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "example-image: $busybox is dynamically linked; install busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/oci/blobs/sha256"
cp "$busybox" "$work/rootfs/bin/busybox"
for applet in sh echo sleep cat ls env; do ln -sf busybox "$work/rootfs/bin/$applet"; done
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .

blob() { # file -> digest (stores the blob)
  local d
  d=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$work/oci/blobs/sha256/$d"
  echo "$d"
}
size() { stat -c %s "$1"; }

layer=$(blob "$work/layer.tar")
cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh","-c","trap 'exit 0' TERM; echo hello from grove; while true; do sleep 5 & wait \$!; done"]},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]}}
EOF
config=$(blob "$work/config.json")
cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$(size "$work/config.json")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer","size":$(size "$work/layer.tar")}]}
EOF
manifest=$(blob "$work/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
cat >"$work/oci/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$(size "$work/manifest.json"),"annotations":{"io.containerd.image.name":"$image","org.opencontainers.image.ref.name":"1"}}]}
EOF
tar -C "$work/oci" -cf "$work/hello.tar" .

for ns in "${namespaces[@]}"; do
  ctr -a "$socket" -n "$ns" images import "$work/hello.tar" >/dev/null
  echo "example-image: $image is in containerd namespace $ns"
done
