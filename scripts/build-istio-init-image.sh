#!/usr/bin/env bash
# Builds, offline from any registry, the init-container image the istio-init way runs in bench:cri:
# the smallest Debian (mmdebstrap, essential) plus iptables and the documented sidecar rules
# (/work/shared/fixtures-style file, RULES=…), whose entrypoint is `iptables-nft-restore` of them.
# Cached as a podman image tagged by a hash of its recipe; prints the tag.
#
#   bash scripts/build-istio-init-image.sh            # → localhost/meshcni-bench-istio-init:<hash>
#   RULES=path/to.rules MIRROR=http://deb.debian.org/debian bash scripts/build-istio-init-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=${RULES:-bench/fixtures/istio-sidecar-default.v4.rules}
SUITE=${SUITE:-bookworm}
# MIRROR: this machine's apt mirror unless set (scripts/apt-mirror.sh).
source scripts/apt-mirror.sh

die() { echo "build-istio-init-image: $*" >&2; exit 1; }
for tool in podman mmdebstrap sha256sum; do command -v "$tool" >/dev/null || die "$tool is not installed (see .ci/run)"; done
[[ -s $RULES ]] || die "RULES=$RULES: no such rules file"

recipe="essential iptables $SUITE $MIRROR $(sha256sum "$RULES" | cut -c1-16) $(sha256sum "$0" | cut -c1-16)"
tag="localhost/meshcni-bench-istio-init:$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
if podman image exists "$tag"; then
  echo "build-istio-init-image: $tag cached" >&2
  echo "$tag"
  exit 0
fi
echo "build-istio-init-image: assembling $tag from $MIRROR $SUITE (iptables)" >&2
mmdebstrap --variant=essential --include=iptables \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='mkdir -p "$1/etc/istio-init"' \
  --customize-hook="copy-in $RULES /etc/istio-init" \
  --customize-hook="chroot \"\$1\" mv /etc/istio-init/$(basename "$RULES") /etc/istio-init/rules" \
  --customize-hook='chroot "$1" /usr/sbin/iptables-nft-restore --version' \
  "$SUITE" - "$MIRROR" \
  | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENTRYPOINT ["/usr/sbin/iptables-nft-restore", "/etc/istio-init/rules"]' - "$tag" >&2
echo "$tag"
