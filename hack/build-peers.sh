#!/usr/bin/env bash
# Builds the peers the comparison benchmark (bench/peers) runs beside canary,
# Argo Rollouts and Flagger, from Go modules, the way build-binaries.sh builds
# the control plane, and caches them beside it, keyed by the versions pinned in
# hack/tools/{argo-rollouts,flagger}/go.mod. Only the peer benchmark needs
# them: `make test` never calls this.
#
# Prints, one per line on stdout:
#   bin=<cache dir holding rollouts-controller, kubectl-argo-rollouts, flagger>
#   argo-rollouts-crds=<manifests/crds of the pinned module, in the module cache>
#   flagger-crds=<artifacts/flagger/crd.yaml of the pinned module>
# The CRDs are read from the Go module cache (downloaded if missing), never
# copied into the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/tools"

pinned() { # pinned <tools-subdir> <module>: the version go.mod requires
	awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$tools/$1/go.mod"
}
argo_version="$(pinned argo-rollouts github.com/argoproj/argo-rollouts)"
flagger_version="$(pinned flagger github.com/fluxcd/flagger)"
key="argo-rollouts-${argo_version}_flagger-${flagger_version}"
cache="${CANARY_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary/bin}/$key"

# subdir  package  binary  version
targets=(
	"flagger github.com/fluxcd/flagger/cmd/flagger flagger $flagger_version"
	"argo-rollouts github.com/argoproj/argo-rollouts/cmd/rollouts-controller rollouts-controller $argo_version"
	"argo-rollouts github.com/argoproj/argo-rollouts/cmd/kubectl-argo-rollouts kubectl-argo-rollouts $argo_version"
)

command -v go >/dev/null || { echo "build-peers: 'go' is not on PATH; install Go 1.26+ first" >&2; exit 1; }
mkdir -p "$cache"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start_all=$SECONDS
built=0
for t in "${targets[@]}"; do
	read -r dir pkg bin version <<<"$t"
	if [[ -x "$cache/$bin" ]]; then
		continue
	fi
	ldflags="-s -w"
	if [[ $dir == argo-rollouts ]]; then
		# Only so that the controller's version log line tells the truth.
		ldflags+=" -X github.com/argoproj/argo-rollouts/utils/version.version=${version#v}"
	fi
	echo "build-peers: building $bin $version ..." >&2
	start=$SECONDS
	(cd "$tools/$dir" && go build -trimpath -ldflags "$ldflags" -o "$cache/$bin.tmp" "$pkg")
	mv "$cache/$bin.tmp" "$cache/$bin"
	echo "build-peers: built $bin in $((SECONDS - start)) s" >&2
	built=$((built + 1))
done
if ((built > 0)); then
	echo "build-peers: $built binaries built in $((SECONDS - start_all)) s into $cache" >&2
fi

module_dir() { # module_dir <tools-subdir> <module>@<version>: its directory in the module cache
	(cd "$tools/$1" && go mod download -json "$2" | awk -F'"' '$2 == "Dir" {print $4}')
}
argo_dir="$(module_dir argo-rollouts "github.com/argoproj/argo-rollouts@$argo_version")"
flagger_dir="$(module_dir flagger "github.com/fluxcd/flagger@$flagger_version")"
echo "bin=$cache"
echo "argo-rollouts-crds=$argo_dir/manifests/crds"
echo "flagger-crds=$flagger_dir/artifacts/flagger/crd.yaml"
