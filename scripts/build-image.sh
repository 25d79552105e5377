#!/usr/bin/env bash
# Builds the meshcni image locally with podman, without any registry: two base images assembled
# from Debian packages with mmdebstrap plus this machine's Node (/usr/bin/node), then deploy/Dockerfile
# on top of them. The bases are cached as podman images named by a hash of their recipe, so a rerun
# only rebuilds the meshcni layers.
#
#   bash scripts/build-image.sh        # → ghcr.io/meshcni/meshcni:<package.json version>, the chart's default image
#   IMAGE=localhost/meshcni:x MIRROR=http://deb.debian.org/debian NODE_BIN=/usr/bin/node bash scripts/build-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The name the Helm chart and deploy/daemonset.yaml run by default (image.repository, tag = appVersion), so a
# locally built image loaded into a node's containerd (docs/deploying.md) is the one the DaemonSet starts.
IMAGE=${IMAGE:-ghcr.io/meshcni/meshcni:$(node -p 'require("./package.json").version')}
SUITE=${SUITE:-bookworm}
NODE_BIN=${NODE_BIN:-/usr/bin/node}
# MIRROR: this machine's apt mirror unless set (scripts/apt-mirror.sh).
source scripts/apt-mirror.sh

die() { echo "build-image: $*" >&2; exit 1; }
for tool in podman mmdebstrap sha256sum; do command -v "$tool" >/dev/null || die "$tool is not installed (see the apt-get line in .ci/run)"; done
[[ -x "$NODE_BIN" ]] || die "NODE_BIN=$NODE_BIN is not an executable Node"
NODE_PREFIX=$(cd "$(dirname "$NODE_BIN")/.." && pwd)
NODE_VERSION=$("$NODE_BIN" --version)
[[ -f "$NODE_PREFIX/include/node/node_api.h" ]] || die "no Node headers at $NODE_PREFIX/include/node (node-gyp needs them offline)"
# npm's own directory (…/npm/bin/npm-cli.js resolved), wherever this system's npm lives.
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm || echo /nonexistent)")")")
[[ -f "$NPM_DIR/bin/npm-cli.js" ]] || die "no npm found (npm on PATH resolving to …/npm/bin/npm-cli.js)"

# Runtime: the smallest Debian (essential: no apt) plus the C++ runtime Node and the addon link to.
RUNTIME_PACKAGES=libstdc++6
# Builder: a C/C++ toolchain, python3 for node-gyp, musl for the static shim, CAs for npm.
BUILDER_PACKAGES=build-essential,python3,musl-tools,ca-certificates,make

# Builds one base unless an image with the same recipe hash exists. $1 name, $2 variant, $3 packages,
# $4 whether npm and the Node headers go in too (builder only).
base_image() {
  local name=$1 variant=$2 packages=$3 with_npm=$4
  local recipe="$name $variant $packages $with_npm $SUITE $MIRROR $NODE_VERSION $(sha256sum "$NODE_BIN" | cut -c1-16) v1"
  local tag
  tag="localhost/meshcni-base:$name-$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
  if podman image exists "$tag"; then
    echo "build-image: $tag cached" >&2
    echo "$tag"
    return
  fi
  echo "build-image: assembling $tag from $MIRROR $SUITE ($packages) + Node $NODE_VERSION" >&2
  local hooks=(
    --customize-hook="copy-in $NODE_BIN /usr/bin"
    --customize-hook='chroot "$1" /usr/bin/node --version'
  )
  if [[ $with_npm == yes ]]; then
    hooks+=(
      --customize-hook='mkdir -p "$1/usr/lib/node_modules" "$1/usr/include"'
      --customize-hook="copy-in $NPM_DIR /usr/lib/node_modules"
      --customize-hook="copy-in $NODE_PREFIX/include/node /usr/include"
      --customize-hook='ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/bin/npm"'
    )
  fi
  # Documentation and locales are never read in a container; keep them out of both bases.
  mmdebstrap --variant="$variant" --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "${hooks[@]}" "$SUITE" - "$MIRROR" \
    | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >&2
  echo "$tag"
}

RUNTIME_BASE=$(base_image runtime essential "$RUNTIME_PACKAGES" no)
BUILDER_BASE=$(base_image builder apt "$BUILDER_PACKAGES" yes)

# The build stage fetches npm packages from the registry, so it shares the host's network and, for
# its RUN steps only (nothing lands in a layer), the CAs this machine trusts.
trust=()
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  trust=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
podman build --network host "${trust[@]}" -f deploy/Dockerfile \
  --build-arg BASE="$RUNTIME_BASE" --build-arg BUILDER="$BUILDER_BASE" \
  -t "$IMAGE" .
echo "build-image: built $IMAGE (base $RUNTIME_BASE, builder $BUILDER_BASE)" >&2
echo "build-image: load it into a node's containerd: podman save $IMAGE | ctr -n k8s.io images import -" >&2
