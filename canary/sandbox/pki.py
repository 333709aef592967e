"""The sandbox's own certificate authority and the API server's serving cert.

A client that verifies TLS (kubectl, the controller running in-cluster with
the CA at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt) must be able
to check the API server's certificate, as on a real cluster: so the sandbox
makes a CA on every `up`, signs a serving cert for 127.0.0.1 with it, and the
kubeconfig and the kube-root-ca.crt ConfigMaps carry that CA. EC P-256 keys,
so generating them costs milliseconds, not the seconds of RSA.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Names a pod uses for the API server; 127.0.0.1 is what the sandbox serves on.
_SERVER_NAMES = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make(directory: Path) -> Pki:
    """A fresh CA and a serving cert signed by it, in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = (
        directory / "apiserver.key",
        directory / "apiserver.csr",
        directory / "apiserver.crt",
    )
    for path in (ca_key, key):
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )
        path.chmod(0o600)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-out", str(ca_cert), "-days", "30",
        "-subj", "/CN=canary-sandbox-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    extensions = directory / "apiserver.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(_SERVER_NAMES)}\n"
    )
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "30", "-extfile", str(extensions),
    )  # fmt: skip
    return Pki(ca_cert=ca_cert, server_cert=cert, server_key=key)
