#!/usr/bin/env bash
# The Prometheus operator's CRDs (ServiceMonitor, PrometheusRule, ...) for
# the sandbox test of the monitoring components, taken from the operator's
# own Go module so that nothing is copied into this repository. Prints the
# directory that holds them (example/prometheus-operator-crd/ of the module).
set -euo pipefail
module=github.com/prometheus-operator/prometheus-operator
version="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
command -v go >/dev/null || { echo "operator-crds: 'go' is not on PATH" >&2; exit 1; }
dir="$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
crds="$dir/example/prometheus-operator-crd"
[[ -f $crds/monitoring.coreos.com_servicemonitors.yaml ]] || {
	echo "operator-crds: no CRDs in $crds" >&2
	exit 1
}
echo "$crds"
