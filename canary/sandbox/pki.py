"""The sandbox's own certificate authorities and the certs they sign.

A client that verifies TLS (kubectl, the controller running in-cluster with
the CA at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt) must be able
to check the API server's certificate, as on a real cluster: so the sandbox
makes a CA on every `up`, signs a serving cert for 127.0.0.1 with it, and the
kubeconfig and the kube-root-ca.crt ConfigMaps carry that CA.

A second CA signs the client cert the API server's aggregator presents to
extension API servers (the metrics adapter of `up --metrics`), which trust it
through the extension-apiserver-authentication ConfigMap, as on a real
cluster. EC P-256 keys: generating them costs milliseconds, not the seconds
of RSA.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Names a pod uses for the API server; 127.0.0.1 is what the sandbox serves on.
API_SERVER_NAMES = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)
FRONT_PROXY_CLIENT = "front-proxy-client"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    server: Pair
    front_proxy_ca: Pair
    front_proxy_client: Pair

    @property
    def ca_cert(self) -> Path:
        return self.ca.cert


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key(path: Path) -> Path:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    path.chmod(0o600)
    return path


def authority(directory: Path, name: str) -> Pair:
    key = _key(directory / f"{name}.key")
    cert = directory / f"{name}.crt"
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "30",
        "-subj", f"/CN=canary-sandbox-{name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return Pair(cert, key)


def sign(
    ca: Pair, directory: Path, name: str, common_name: str, names: tuple[str, ...] = ()
) -> Pair:
    """A serving cert (when names are given) or a client cert signed by ca."""
    key = _key(directory / f"{name}.key")
    csr, cert, extensions = (directory / f"{name}.{ext}" for ext in ("csr", "crt", "ext"))
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth' if names else 'clientAuth'}",
    ]
    if names:
        lines.append(f"subjectAltName={','.join(names)}")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={common_name}")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-out", str(cert), "-days", "30", "-extfile", str(extensions),
    )  # fmt: skip
    return Pair(cert, key)


def make(directory: Path) -> Pki:
    """Fresh CAs, the API server's serving cert and the aggregator's client cert."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = authority(directory, "ca")
    front_proxy_ca = authority(directory, "front-proxy-ca")
    return Pki(
        ca=ca,
        server=sign(ca, directory, "apiserver", "kube-apiserver", API_SERVER_NAMES),
        front_proxy_ca=front_proxy_ca,
        front_proxy_client=sign(front_proxy_ca, directory, FRONT_PROXY_CLIENT, FRONT_PROXY_CLIENT),
    )
