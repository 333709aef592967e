"""The local sandbox: a real Kubernetes control plane, Prometheus and a traffic
simulator, all as processes on 127.0.0.1, for tests, benchmarks and the demo."""
