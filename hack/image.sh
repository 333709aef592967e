#!/usr/bin/env bash
# Builds the controller image from the Dockerfile with the first container
# engine that works here: docker (when its daemon answers), podman, buildah.
# Without one it says so and exits 1; nothing is installed behind your back.
#
#   make image                                  # ghcr.io/canary-io/canary:<version>
#   make image IMAGE=registry.example.com/platform/canary:0.1.0-1
#   CONTAINER_ENGINE=podman make image          # skip the search
#
# Only shell builtins besides the engine itself, so it runs with any PATH.
set -euo pipefail
root="${BASH_SOURCE[0]%/*}/.."
cd "$root"

version=""
while IFS= read -r line; do
	if [[ $line =~ ^version\ *=\ *\"([^\"]+)\" ]]; then
		version="${BASH_REMATCH[1]}"
		break
	fi
done <pyproject.toml
image="${IMAGE:-ghcr.io/canary-io/canary:${version:?no version in pyproject.toml}}"

build() { # build <engine>
	case "$1" in
	docker | podman) "$1" build --tag "$image" . ;;
	buildah) buildah bud --tag "$image" . ;;
	*)
		echo "make image: unknown engine '$1' (docker, podman or buildah)" >&2
		return 1
		;;
	esac
}

usable() { # usable <engine>: installed, and for docker a daemon that answers
	command -v "$1" >/dev/null 2>&1 || return 1
	if [[ $1 == docker ]] && ! docker info >/dev/null 2>&1; then
		skipped+=("docker (installed, but no daemon answers)")
		return 1
	fi
}

skipped=()
engines=(docker podman buildah)
if [[ -n ${CONTAINER_ENGINE:-} ]]; then
	engines=("$CONTAINER_ENGINE")
fi
for engine in "${engines[@]}"; do
	if usable "$engine"; then
		echo "make image: building $image with $engine" >&2
		build "$engine"
		echo "make image: built $image; push it with: $engine push $image" >&2
		exit 0
	fi
done
{
	echo "make image: no container engine to build with: tried ${engines[*]}."
	if ((${#skipped[@]})); then
		echo "  skipped: ${skipped[*]}"
	fi
	echo "  Install one (Debian: apt-get install podman or buildah; or start the docker daemon),"
	echo "  or build the Dockerfile where one runs: docker build -t $image ."
} >&2
exit 1
