#!/usr/bin/env bash
# `make images`: builds FLOW's images flow-ingest, flow-engine and flow-query (services/Dockerfile)
# with buildah, a daemonless builder, and prints each one's size and digest. Everything it keeps is
# under .state/: the container storage (the layer cache), the base image's tarball, the wheels.
#
#   bash tools/images.sh            install the tools if needed, then base, wheels, the three images
#   bash tools/images.sh wheels     only the wheels (skaffold's pre-build hook)
#   bash tools/images.sh env        print the environment podman and buildah need (for `eval`)
#   bash tools/images.sh clean      remove every container and image FLOW made, and the storage
#
# The builder comes from Debian's packages, installed when run as root on Debian/Ubuntu; elsewhere it
# says what to install and exits with status 3 (the tests skip then, unless CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.state
IMAGES=$STATE/images
TAG=${FLOW_IMAGE_TAG:-dev}
BASE=${FLOW_IMAGE_BASE:-flow-base:bookworm}
SERVICES=(ingest engine query)
# Debian's builder and runtime; the two settings these VMs need are in the containers.conf below.
TOOLS=(buildah podman mmdebstrap runc conmon golang-github-containers-common fuse-overlayfs uidmap)

say() { printf 'images: %s\n' "$*"; }
die() { printf 'images: %s\n' "$*" >&2; exit "${2:-1}"; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# Container storage and configuration of FLOW's own, so nothing of the machine's is touched.
containers_env() {
  local conf=$STATE/containers
  mkdir -p "$conf"
  cat > "$conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$conf/storage"
runroot = "$conf/run"
EOF
  # Root here lacks CAP_SYS_RESOURCE (crun cannot raise RLIMIT_NPROC) and the cgroups are v1
  # "hybrid", which crun refuses: runc and explicit limits work on both.
  cat > "$conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_STORAGE_CONF=$conf/storage.conf CONTAINERS_CONF=$conf/containers.conf
}

install_tools() {
  local missing=()
  for cmd in buildah podman mmdebstrap runc; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${TOOLS[*]} from the OS packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${TOOLS[@]}" >/dev/null
  else
    die "${missing[*]} missing: as root on Debian/Ubuntu, apt-get install --no-install-recommends ${TOOLS[*]}; elsewhere install buildah, podman and mmdebstrap from your distribution" 3
  fi
}

# The base: Debian bookworm's minimal system with Debian's own python3 (services/base-packages.txt),
# assembled from Debian's packages, so it is made the same way wherever Debian's archive is reached.
build_base() {
  local packages sum
  packages=$(paste -sd, services/base-packages.txt)
  # Like debian:12-slim: no documentation, manual pages or translations (licences are kept).
  local opts=(--variant=minbase "--include=$packages" --aptopt='Acquire::Languages "none"'
              --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
              --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
              --dpkgopt='path-exclude=/usr/share/locale/*')
  sum=$(printf '%s\n' "${opts[@]}" | sha256sum | cut -c1-16)
  if [ "$(podman image inspect --format '{{index .Labels "org.flow.base-inputs"}}' "$BASE" 2>/dev/null)" = "$sum" ]; then
    return
  fi
  say "making the base $BASE from Debian bookworm's packages (mmdebstrap, about a minute)"
  local started=$SECONDS
  mkdir -p "$IMAGES"
  rm -f "$IMAGES/base.tar"
  mmdebstrap --quiet "${opts[@]}" bookworm "$IMAGES/base.tar"
  podman import --quiet --change 'ENV LANG=C.UTF-8' --change "LABEL org.flow.base-inputs=$sum" \
    --change 'CMD ["/bin/bash"]' "$IMAGES/base.tar" "$BASE" >/dev/null
  rm -f "$IMAGES/base.tar"
  say "made the base in $((SECONDS - started)) s"
}

# Every wheel the build installs, fetched here (outside the build) and checked against the locks.
prepare_wheels() {
  local sum
  sum=$(cat requirements.lock tools/image-build.lock | sha256sum | cut -c1-16)
  stamp_ok "$IMAGES/wheels/.stamp" "$sum" && return
  [ -x "$STATE/uv/bin/python" ] || die "$STATE/uv is missing: run 'bash tools/bootstrap.sh' (or 'make setup') first"
  say "downloading the locked wheels into .state/images/wheels"
  local started=$SECONDS
  rm -rf "$IMAGES/wheels"
  mkdir -p "$IMAGES/wheels"
  # Linux x86_64 wheels for CPython 3.11, whatever machine prepares them.
  "$STATE/uv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
    -r requirements.lock -r tools/image-build.lock -d "$IMAGES/wheels" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$sum" > "$IMAGES/wheels/.stamp"
  say "downloaded the wheels in $((SECONDS - started)) s"
}

build_images() {
  local svc started
  for svc in "${SERVICES[@]}"; do
    started=$SECONDS
    # docker format keeps HEALTHCHECK; no network: everything comes from the context.
    buildah bud --quiet --format docker --layers --pull=never --network=none \
      --build-arg "BASE=$BASE" --target "$svc" -f services/Dockerfile -t "flow-$svc:$TAG" . >/dev/null
    say "built flow-$svc:$TAG in $((SECONDS - started)) s"
  done
  for svc in "${SERVICES[@]}"; do
    podman image inspect --format "flow-$svc:$TAG  {{.Size}} bytes  {{.Digest}}  id {{.Id}}" "flow-$svc:$TAG" |
      awk '{ printf "images: %s  %.0f MB  %s  %s %.12s\n", $1, $2 / 1e6, $4, $5, $6 }'
  done
}

clean() {
  command -v podman >/dev/null || { rm -rf "$STATE/containers" "$IMAGES"; return; }
  podman rm --all --force >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  podman system reset --force >/dev/null 2>&1 || true
  rm -rf "$STATE/containers" "$IMAGES"
}

containers_env
case "${1:-all}" in
  all) install_tools; build_base; prepare_wheels; build_images ;;
  wheels) prepare_wheels ;;
  env) printf 'export CONTAINERS_STORAGE_CONF=%q CONTAINERS_CONF=%q\n' "$CONTAINERS_STORAGE_CONF" "$CONTAINERS_CONF" ;;
  clean) clean ;;
  *) die "unknown command '$1' (all, wheels, env, clean)" 2 ;;
esac
