#!/bin/sh
# Make a local Debian bookworm base image for podman builds: no registry is reachable here, so the image
# that a Dockerfile's FROM names must exist locally. mmdebstrap --variant=minbase gives Debian's essential
# set + apt; python3 (3.11 on bookworm) is the interpreter the image's venv uses, because uv cannot download
# managed Pythons here; passwd brings useradd for the non-root user; ca-certificates for TLS inside builds.
#
# usage: tests/podman_base.sh IMAGE [MIRROR]     e.g. tests/podman_base.sh localhost/envbuilder-base:bookworm
set -eu
image=${1:?usage: podman_base.sh IMAGE [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
storage=${PODMAN_STORAGE:---storage-driver vfs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$tmp/rootfs.tar" "$mirror"
# shellcheck disable=SC2086  # $storage is a list of options on purpose
podman $storage import --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$image"
