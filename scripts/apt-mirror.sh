# Sourced by the image scripts (build-image.sh, build-istio-init-image.sh): unless MIRROR is set, it
# becomes the apt mirror this machine is configured with (the first deb.debian.org-style URI in its
# sources, never -security), else deb.debian.org; mmdebstrap is then given it explicitly.
if [[ -z "${MIRROR:-}" ]]; then
  MIRROR=$(grep -rhE '^[^#]*https?://' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | sed 's/[[:space:]]*$//' | grep -v -- '-security' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
