#!/usr/bin/env bash
# Installs a Vulkan driver that Dawn accepts on machines without a GPU: Mesa's lavapipe
# ("llvmpipe") from bookworm-backports (bookworm's own Mesa 22.3 is too old for Dawn).
# The backports source reuses the mirror already configured for bookworm. Idempotent.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 && ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "software Vulkan already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
src=/etc/apt/sources.list.d/debian.sources
uri=$(awk '/^URIs:/ {print $2; exit}' "$src")
if [ -z "$uri" ]; then
  echo "no Debian mirror found in $src" >&2
  exit 1
fi
if ! grep -rqs bookworm-backports /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports libvulkan1 mesa-vulkan-drivers
