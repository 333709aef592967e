#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (chromedriver) for the
# dashboard's browser tests, when they are missing. Nothing else is
# downloaded: no browser build of its own, no driver from the internet.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "hack/browser.sh: run as root, or: apt-get install chromium chromium-driver" >&2
	exit 1
fi
echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; then
	apt-get update -qq >/dev/null
	apt-get install -y -qq chromium chromium-driver >/dev/null
fi
/usr/bin/chromium --version >&2
