#!/usr/bin/env bash
# Installs Debian's python3.11 (with venv/ensurepip) when missing: the
# in-cluster test follows the Dockerfile with it standing in for the
# python:3.11-slim base image (tests/integration/dockerfile.py).
set -euo pipefail
if /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null; then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "hack/base-python.sh: run as root, or: apt-get install python3.11 python3.11-venv" >&2
	exit 1
fi
echo "installing Debian's python3.11 for the in-cluster test's image build" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq python3.11 python3.11-venv >/dev/null 2>&1; then
	apt-get update -qq >/dev/null
	apt-get install -y -qq python3.11 python3.11-venv >/dev/null
fi
