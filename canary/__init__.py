"""canary: progressive delivery for Kubernetes Services without a service mesh."""

__version__ = "0.1.0"
