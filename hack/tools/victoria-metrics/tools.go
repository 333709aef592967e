//go:build tools

// Package tools pins the single-node VictoriaMetrics built by
// hack/build-binaries.sh --victoria-metrics: the tests that check the
// analysis reads a VictoriaMetrics backend as it reads Prometheus (its
// instant queries near now are answered as of -search.latencyOffset ago
// unless asked otherwise).
package tools

import _ "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics"
