#!/usr/bin/env bash
# Builds the sandbox's real control-plane binaries from Go modules and caches
# them outside the repo, keyed by the versions pinned in hack/tools/*/go.mod.
# Prints the cache directory on its last line. A no-op when the cache is full.
#
# `build-binaries.sh --metrics` builds instead the opt-in metrics pipeline
# (prometheus-adapter, for `canary sandbox up --metrics`) into a cache
# directory of its own, and prints that one; `--victoria-metrics` likewise
# the single-node VictoriaMetrics the backend tests query.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/tools"
cache_root="${CANARY_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary/bin}"

pinned() { # pinned <tools-subdir> <module>: the version go.mod requires
	awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$tools/$1/go.mod"
}

opt_in() { # opt_in <tools-subdir> <module> <package> <binary>: build one into a cache of its own
	command -v go >/dev/null || { echo "build-binaries: 'go' is not on PATH; install Go 1.26+ first" >&2; exit 1; }
	local version cache start
	version="$(pinned "$1" "$2")"
	cache="$cache_root/$4-$version"
	if [[ ! -x "$cache/$4" ]]; then
		mkdir -p "$cache"
		echo "build-binaries: building $4 $version ..." >&2
		start=$SECONDS
		(cd "$tools/$1" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
			go build -trimpath -ldflags "-s -w" -o "$cache/$4.tmp" "$3")
		mv "$cache/$4.tmp" "$cache/$4"
		echo "build-binaries: built $4 in $((SECONDS - start)) s" >&2
	fi
	echo "$cache"
}

case ${1:-} in
--metrics)
	opt_in prometheus-adapter sigs.k8s.io/prometheus-adapter sigs.k8s.io/prometheus-adapter/cmd/adapter prometheus-adapter
	exit 0
	;;
--victoria-metrics)
	opt_in victoria-metrics github.com/VictoriaMetrics/VictoriaMetrics \
		github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics victoria-metrics
	exit 0
	;;
esac
k8s_version="$(pinned kubernetes k8s.io/kubernetes)"
etcd_version="$(pinned etcd go.etcd.io/etcd/server/v3)"
kwok_version="$(pinned kwok sigs.k8s.io/kwok)"
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}"
cache="$cache_root/$key"

# subdir  package  binary  version
targets=(
	"etcd go.etcd.io/etcd/server/v3 etcd $etcd_version"
	"kwok sigs.k8s.io/kwok/cmd/kwok kwok $kwok_version"
	"kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver $k8s_version"
	"kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager $k8s_version"
	"kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler $k8s_version"
	"kubernetes k8s.io/kubernetes/cmd/kubectl kubectl $k8s_version"
)

command -v go >/dev/null || { echo "build-binaries: 'go' is not on PATH; install Go 1.26+ first" >&2; exit 1; }
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
	if [[ $dir == kubernetes ]]; then
		# Only so that /version and `kubectl version` tell the truth.
		ldflags+=" -X k8s.io/component-base/version.gitVersion=$version"
		ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
		ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version")"
		ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
	fi
	echo "build-binaries: building $bin $version ..." >&2
	start=$SECONDS
	(cd "$tools/$dir" && go build -trimpath -ldflags "$ldflags" -o "$cache/$bin.tmp" "$pkg")
	mv "$cache/$bin.tmp" "$cache/$bin"
	echo "build-binaries: built $bin in $((SECONDS - start)) s" >&2
	built=$((built + 1))
done
# Prometheus comes from Debian's package. We unpack it rather than install it:
# installing starts a system service on 0.0.0.0:9090, and the sandbox must
# run its own instance on loopback.
if [[ ! -x "$cache/prometheus" || ! -x "$cache/promtool" ]]; then
	echo "build-binaries: fetching Debian's prometheus package ..." >&2
	start=$SECONDS
	deb_dir="$(mktemp -d)"
	trap 'rm -rf "$deb_dir"' EXIT
	if ! (cd "$deb_dir" && apt-get download prometheus >/dev/null 2>&1); then
		apt-get update -qq >/dev/null
		(cd "$deb_dir" && apt-get download prometheus >/dev/null 2>&1)
	fi
	dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/x"
	cp "$deb_dir/x/usr/bin/prometheus" "$deb_dir/x/usr/bin/promtool" "$cache/"
	echo "build-binaries: prometheus $("$cache/prometheus" --version 2>&1 | awk 'NR==1 {print $3}') ready in $((SECONDS - start)) s" >&2
fi
if ((built > 0)); then
	echo "build-binaries: $built binaries built in $((SECONDS - start_all)) s into $cache" >&2
fi
echo "$cache"
