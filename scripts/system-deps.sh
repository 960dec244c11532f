#!/usr/bin/env bash
# Debian packages some tests and `k2 up --cluster` use. Installs them when missing and we
# may (root + apt); otherwise says so, and the tests that need them skip with that reason.
set -u
need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# `k2 up --cluster` runs its own unprivileged PostgreSQL under K2_HOME from these binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: cannot install ${need[*]} (needs root and apt-get); dependent tests will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The prometheus and postgresql packages would start system servers; we want only their
# binaries (promtool; initdb and pg_ctl, which `k2 up --cluster` runs under K2_HOME).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
(apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1 && apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; }) \
  || echo "system-deps: apt-get could not install ${need[*]}; dependent tests will skip" >&2
rm -f /usr/sbin/policy-rc.d
exit 0
