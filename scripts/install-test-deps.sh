#!/usr/bin/env bash
# Install the Debian packages Dockyard's test-suite needs (idempotent).
#
#   skopeo, docker.io (dockerd + docker CLI), containerd, runc,
#   docker-registry (CNCF distribution 2.8, /usr/bin/docker-registry),
#   busybox-static, apache2-utils (htpasswd), wrk, git, ca-certificates,
#   iptables (docker.io depends on it), chromium (the web UI's browser tests),
#   openssh-server and openssh-client (builds from a private source over SSH with a deploy key;
#   the tests start their own sshd on 127.0.0.1), procps (pgrep/pkill find build containers),
#   curl (bench/registry.py measures blob GETs with it).
#
# Quick no-op when everything is already installed. Must run as root (or via
# sudo). Never leaves a system dockerd / containerd / docker-registry running:
# the tests start their own daemons with their own data dirs, sockets and
# ports.
set -euo pipefail

PKGS=(
  skopeo
  docker.io
  containerd
  runc
  docker-registry
  busybox-static
  apache2-utils
  wrk
  git
  ca-certificates
  iptables
  chromium
  openssh-server
  openssh-client
  procps
  curl
)

# Services some of these packages would start / enable from their postinst.
SERVICES=(docker containerd docker-registry)

SUDO=()
missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-test-deps: all packages present"
else
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-test-deps: need root (missing: ${missing[*]})" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive

  # Keep package postinst scripts from starting services (policy-rc.d trick,
  # honoured by invoke-rc.d / deb-systemd-invoke). Remove it afterwards only
  # if we created it.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  cleanup() { if ((created_policy)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT

  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# Make sure no system daemons are left running / enabled. On a machine whose
# PID 1 is systemd, stop and disable the units; otherwise (containers, this
# CI) nothing was started thanks to policy-rc.d, but stop sysv leftovers.
if [[ "$(ps -p 1 -o comm= 2>/dev/null || true)" == systemd ]]; then
  for s in "${SERVICES[@]}"; do
    for u in "$s.service" "$s.socket"; do
      if systemctl list-unit-files "$u" >/dev/null 2>&1 &&
         systemctl is-enabled --quiet "$u" 2>/dev/null; then
        "${SUDO[@]}" systemctl disable --now "$u" >/dev/null 2>&1 || true
      fi
      if systemctl is-active --quiet "$u" 2>/dev/null; then
        "${SUDO[@]}" systemctl stop "$u" >/dev/null 2>&1 || true
      fi
    done
  done
fi

# Sanity check: every binary the tests use is present.
for b in skopeo docker dockerd containerd runc docker-registry busybox htpasswd wrk git chromium \
  /usr/sbin/sshd ssh ssh-keygen pgrep pkill; do
  command -v "$b" >/dev/null || { echo "install-test-deps: $b not found after install" >&2; exit 1; }
done
echo "install-test-deps: ok"
