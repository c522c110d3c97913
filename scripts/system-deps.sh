#!/usr/bin/env bash
# Installs the Debian packages the integration tests and benchmarks use, when they are missing.
# Needs root (CI and these machines run as root); otherwise prints what to install and fails.
set -euo pipefail
missing=()
for pkg in "$@"; do
  # installed means "ii", not merely known to dpkg (removed packages keep their config)
  dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
