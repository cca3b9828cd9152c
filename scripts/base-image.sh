#!/usr/bin/env bash
# Makes the base image serving/Dockerfile's FROM names, for engines that cannot pull it (these
# machines reach no registry). Debian's own packages via debootstrap give Python 3.11 with venv and
# pip; tagged with the official image's name, the real Dockerfile builds unchanged. Idempotent.
set -euo pipefail
NAME=${1:-python:3.11-slim-bookworm}
if docker image inspect "$NAME" >/dev/null 2>&1; then exit 0; fi
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  bookworm "$ROOTFS" "${MIRROR:-http://deb.debian.org/debian}" >/dev/null
# This machine reaches the package index through a TLS-inspecting egress proxy whose CA the host
# trusts; the stand-in trusts the same CAs so `pip install` inside `docker build` works as on the host.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1 || cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
fi
tar -C "$ROOTFS" -c . | docker import - "$NAME" >/dev/null
echo "base image $NAME made with debootstrap" >&2
