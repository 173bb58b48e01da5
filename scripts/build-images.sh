#!/usr/bin/env bash
# Builds Grove's container images on a machine that reaches Debian's package archive but no
# container registry (the Docker engine may start with no image at all):
#
#   1. grove/debian:<release>  a minimal Debian base, made with `debootstrap --variant=minbase`
#                              and `docker import` (skipped when the image exists; --rebuild)
#   2. grove/root, grove/cluster, grove/worker
#                              from docker/<name>/Dockerfile, with the binaries compiled on the
#                              host (Rust is never compiled inside Docker)
#   3. grove/haproxy           HAProxy from Debian's archive, on the same base
#
# The Dockerfiles are ordinary: `ARG BASE` defaults to grove/debian:bookworm, and with a registry
#   docker build --build-arg BASE=debian:bookworm-slim -f docker/root/Dockerfile <dir with grove-root>
# builds the same image. See docker/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/build-images.sh [options]

  --release          use release binaries (default: debug)
  --rebuild          rebuild the Debian base image even when it exists
  --base IMAGE       build on IMAGE (e.g. debian:bookworm-slim) instead of the local base
  --only LIST        comma-separated subset of: base,root,cluster,worker,haproxy
  --no-cargo         do not run cargo; use the binaries as they are
  --bin-dir DIR      take the binaries from DIR (implies --no-cargo)
  --no-strip         keep debug symbols in the images' binaries
  --tag TAG          image tag for Grove's images (default: latest)
  --strict           exit 3 when an image was skipped (default: say so loudly, exit 0)
  -h, --help         this text

Environment: CARGO_TARGET_DIR (default ./target), GROVE_DEBIAN_MIRROR (default
http://deb.debian.org/debian).
EOF
}

root_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$root_dir"

profile=debug
rebuild_base=0
base_override=""
only="base,root,cluster,worker,haproxy"
run_cargo=1
bin_dir=""
strip_bins=1
tag=latest
strict=0
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --rebuild) rebuild_base=1 ;;
    --base) base_override=${2:?--base needs an image}; shift ;;
    --only) only=${2:?--only needs a list}; shift ;;
    --no-cargo) run_cargo=0 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; run_cargo=0; shift ;;
    --no-strip) strip_bins=0 ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --strict) strict=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-images: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build-images: $*" >&2; }
loud() {
  local bar
  bar=$(printf '!%.0s' $(seq 1 78))
  printf '\n%s\n' "$bar" >&2
  local line
  for line in "$@"; do printf '!!! %s\n' "$line" >&2; done
  printf '%s\n\n' "$bar" >&2
}
wanted() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    say "not root and no sudo: building the base image (debootstrap) will fail"
  fi
fi

docker_cmd=(docker)
if ! command -v docker >/dev/null 2>&1; then
  say "docker is not installed"; exit 1
fi
if ! docker info >/dev/null 2>&1; then
  if [ ${#sudo_cmd[@]} -gt 0 ] && sudo docker info >/dev/null 2>&1; then
    docker_cmd=(sudo docker)
  else
    say "cannot talk to the Docker engine (is it running, and may this user use it?)"; exit 1
  fi
fi

# The binaries link against the host's glibc: the base must be the host's Debian release.
release=bookworm
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  host_release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  host_id=$(. /etc/os-release && echo "${ID:-}")
  if [ "$host_id" = debian ] && [ -n "$host_release" ]; then
    release=$host_release
  else
    say "host is ${host_id:-unknown}, not Debian: using Debian $release for the base (binaries built here may need a newer glibc than it has)"
  fi
fi
local_base="grove/debian:$release"
base=${base_override:-$local_base}
mirror=${GROVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

image_exists() { "${docker_cmd[@]}" image inspect "$1" >/dev/null 2>&1; }

# --- 1. the Debian base image ---------------------------------------------------------------

rootfs=""
cleanup_rootfs() {
  [ -n "$rootfs" ] && [ -d "$rootfs" ] || return 0
  # debootstrap mounts proc and sys inside the target; never delete through a live mount.
  local m
  for m in $(awk -v d="$rootfs" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    "${sudo_cmd[@]}" umount -l "$m" 2>/dev/null || true
  done
  "${sudo_cmd[@]}" rm -rf --one-file-system "$rootfs"
}
trap cleanup_rootfs EXIT

build_base() {
  if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    say "installing debootstrap"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  local debootstrap
  debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)
  # Not /tmp: it may be a tmpfs mounted nodev, where debootstrap cannot work.
  rootfs=$(mktemp -d /var/tmp/grove-rootfs.XXXXXX)
  say "debootstrap --variant=minbase $release into $rootfs (from $mirror; a few minutes)"
  local started=$SECONDS
  if ! "${sudo_cmd[@]}" "$debootstrap" --variant=minbase --include=ca-certificates \
      "$release" "$rootfs" "$mirror" > "$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2
    loud "debootstrap failed (full log: $rootfs.log)"
    exit 1
  fi
  rm -f "$rootfs.log"
  say "debootstrap took $((SECONDS - started)) s"

  # apt sources with updates and security (debootstrap writes only the release itself), and
  # the small-image settings Debian's official images use: no docs, no man pages, no apt caches.
  "${sudo_cmd[@]}" sh -s "$rootfs" "$release" "$mirror" <<'SH'
set -e
root=$1 release=$2 mirror=$3
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat > "$root/etc/dpkg/dpkg.cfg.d/grove-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > "$root/etc/apt/apt.conf.d/grove-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
EOF
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/lib/apt/lists/* \
  "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log \
  "$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/root/.bash_history
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: > "$root/etc/machine-id"
SH

  say "importing $rootfs as $local_base"
  "${sudo_cmd[@]}" tar --numeric-owner -C "$rootfs" \
      --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | "${docker_cmd[@]}" import \
        --change 'CMD ["bash"]' \
        --change 'ENV LANG=C.UTF-8' \
        --message "Debian $release minbase, debootstrap from $mirror by scripts/build-images.sh" \
        - "$local_base" >/dev/null
  cleanup_rootfs
  rootfs=""
  say "built $local_base ($("${docker_cmd[@]}" image inspect -f '{{.Size}}' "$local_base" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

if [ -z "$base_override" ] && { wanted base || wanted root || wanted cluster || wanted worker || wanted haproxy; }; then
  if [ "$rebuild_base" = 1 ] || ! image_exists "$local_base"; then
    build_base
  else
    say "$local_base exists (use --rebuild to build it again)"
  fi
elif [ -n "$base_override" ] && ! image_exists "$base_override"; then
  say "base image $base_override is not present; docker build will try to pull it"
fi

# --- 2. Grove's images from host-built binaries ---------------------------------------------

# image name -> "package binary"
declare -A crate_of=([root]="grove-root grove-root" [cluster]="grove-cluster grove-cluster" [worker]="grove-worker grove-worker")
grove_images=()
for name in root cluster worker; do
  wanted "$name" && grove_images+=("$name")
done

skipped=()
built=()

target_dir=${CARGO_TARGET_DIR:-$root_dir/target}
case "$target_dir" in /*) ;; *) target_dir="$root_dir/$target_dir" ;; esac
if [ -z "$bin_dir" ]; then
  bin_dir="$target_dir/$profile"
fi

declare -A build_failed=()
if [ "$run_cargo" = 1 ] && [ ${#grove_images[@]} -gt 0 ]; then
  cargo_args=()
  [ "$profile" = release ] && cargo_args+=(--release)
  all_args=()
  for name in "${grove_images[@]}"; do
    read -r pkg bin <<<"${crate_of[$name]}"
    all_args+=(-p "$pkg" --bin "$bin")
  done
  say "cargo build ${cargo_args[*]} ${all_args[*]}"
  if ! cargo build "${cargo_args[@]}" "${all_args[@]}"; then
    # One of them does not build (yet): build each alone to learn which.
    for name in "${grove_images[@]}"; do
      read -r pkg bin <<<"${crate_of[$name]}"
      log=$(mktemp)
      if ! cargo build "${cargo_args[@]}" -p "$pkg" --bin "$bin" >"$log" 2>&1; then
        build_failed[$name]=$(grep -m1 -E '^error' "$log" || tail -n 1 "$log")
      fi
      rm -f "$log"
    done
  fi
fi

stage=""
cleanup_stage() { [ -n "$stage" ] && rm -rf "$stage"; stage=""; }
trap 'cleanup_stage; cleanup_rootfs' EXIT

revision=$(git -C "$root_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)

build_image() { # name context-dir
  local name=$1 ctx=$2
  say "docker build grove/$name:$tag (FROM $base)"
  local log previous
  previous=$("${docker_cmd[@]}" image inspect -f '{{.Id}}' "grove/$name:$tag" 2>/dev/null || true)
  log=$(mktemp)
  if ! "${docker_cmd[@]}" build \
      --build-arg "BASE=$base" \
      --label "org.opencontainers.image.revision=$revision" \
      -t "grove/$name:$tag" "$ctx" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    loud "docker build of grove/$name failed (output above)"
    exit 1
  fi
  rm -f "$log"
  # The image this one replaces is left without a tag: remove it unless a container uses it.
  if [ -n "$previous" ] && [ "$previous" != "$("${docker_cmd[@]}" image inspect -f '{{.Id}}' "grove/$name:$tag")" ]; then
    "${docker_cmd[@]}" rmi "$previous" >/dev/null 2>&1 || true
  fi
  built+=("grove/$name:$tag")
}

for name in "${grove_images[@]}"; do
  read -r pkg bin <<<"${crate_of[$name]}"
  if [ -n "${build_failed[$name]:-}" ]; then
    loud "SKIPPED image grove/$name: cargo build -p $pkg --bin $bin failed:" "  ${build_failed[$name]}"
    skipped+=("grove/$name (binary $bin does not build)")
    continue
  fi
  if [ ! -x "$bin_dir/$bin" ]; then
    loud "SKIPPED image grove/$name: no binary $bin_dir/$bin" \
      "  (build it with: cargo build -p $pkg --bin $bin$([ "$profile" = release ] && echo ' --release'))"
    skipped+=("grove/$name (no binary $bin_dir/$bin)")
    continue
  fi
  stage=$(mktemp -d)
  cp -r "docker/$name/." "$stage/"
  cp "$bin_dir/$bin" "$stage/$bin"
  if [ "$strip_bins" = 1 ] && command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$stage/$bin"
  fi
  build_image "$name" "$stage"
  cleanup_stage
done

# --- 3. HAProxy from Debian's archive --------------------------------------------------------

if wanted haproxy; then
  build_image haproxy docker/haproxy
fi

for image in "${built[@]}"; do
  say "built $image ($("${docker_cmd[@]}" image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
done
if [ ${#skipped[@]} -gt 0 ]; then
  loud "Images NOT built:" "${skipped[@]/#/  }"
  [ "$strict" = 1 ] && exit 3
fi
exit 0
