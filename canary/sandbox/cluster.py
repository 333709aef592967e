"""`canary sandbox up|down|status|env`: the control plane as local processes.

Everything listens on 127.0.0.1 on ports the kernel picked free, so two
sandboxes in different directories never collide. The state file records each
process exactly (see processes.py); `down` stops those and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from canary.sandbox import configs, metrics, pki, processes
from canary.sandbox.binaries import binary_dir, metrics_binary_dir, which

STATE_FILE = "sandbox.json"
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
    "simulator",
)
ADAPTER = "prometheus-adapter"  # only with `up --metrics`


class SandboxError(RuntimeError):
    """A component did not come up; names it, says why and where its log is."""

    def __init__(self, component: str, reason: str, log: str) -> None:
        super().__init__(f"{component} failed: {reason} (log: {log})")
        self.component = component
        self.reason = reason
        self.log = log


@dataclass
class Sandbox:
    dir: Path
    kubeconfig: str = ""
    apiserver: str = ""
    prometheus_url: str = ""
    simulator_url: str = ""
    token: str = ""
    ca: str = ""  # the sandbox CA that signed the API server's serving cert
    audit_log: str = ""  # what service accounts asked the API server (Metadata level)
    procs: list[processes.Proc] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def save(self) -> None:
        data = {
            "kubeconfig": self.kubeconfig,
            "apiserver": self.apiserver,
            "prometheus_url": self.prometheus_url,
            "simulator_url": self.simulator_url,
            "token": self.token,
            "ca": self.ca,
            "audit_log": self.audit_log,
            "procs": [asdict(p) for p in self.procs],
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, directory: Path) -> Sandbox | None:
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        procs = [processes.Proc(**p) for p in data.pop("procs", [])]
        return cls(dir=directory, procs=procs, **data)

    def env(self) -> str:
        return f"export KUBECONFIG={self.kubeconfig}\nexport PROMETHEUS_URL={self.prometheus_url}\n"

    def running(self) -> dict[str, bool]:
        return {p.name: p.alive() for p in self.procs}

    @property
    def has_metrics(self) -> bool:
        return any(p.name == ADAPTER for p in self.procs)


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "canary" / "sandbox"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(
    directory: Path,
    nodes: int = 3,
    pods_per_node: int = 250,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    with_metrics: bool = False,
) -> Sandbox:
    """Start the sandbox; with_metrics adds the metrics pipeline (metrics.py)."""
    directory = directory.resolve()
    with _locked(directory):
        existing = Sandbox.load(directory)
        if (
            existing
            and existing.procs
            and all(existing.running().values())
            and (not with_metrics or existing.has_metrics)
        ):
            say(f"sandbox already running in {directory}")
            return existing
        if existing:
            processes.stop(list(reversed(existing.procs)))
        return _start(directory, nodes, pods_per_node, say, with_metrics)


def down(directory: Path) -> list[str]:
    """Stop every process this sandbox started; returns names that needed SIGKILL."""
    directory = directory.resolve()
    with _locked(directory):
        sandbox = Sandbox.load(directory)
        if sandbox is None:
            return []
        killed = processes.stop(list(reversed(sandbox.procs)))
        sandbox.state_path.unlink(missing_ok=True)
        return killed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(  # noqa: PLR0915 - one linear start-up sequence reads best in one place
    directory: Path,
    nodes: int,
    pods_per_node: int,
    say: Callable[[str], None],
    with_metrics: bool,
) -> Sandbox:
    began = time.monotonic()
    bins = binary_dir()
    for sub in ("etcd", "pki", "prometheus-data", "logs"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    logs = directory / "logs"
    logs.mkdir(parents=True)
    targets = directory / "prometheus-targets"
    targets.mkdir(exist_ok=True)

    sandbox = Sandbox(dir=directory, token=secrets.token_hex(16))
    port = {
        name: free_port()
        for name in (
            "etcd",
            "etcd-peer",
            "apiserver",
            "kcm",
            "scheduler",
            "prometheus",
            "simulator",
            "adapter",
        )
    }
    sandbox.apiserver = f"https://127.0.0.1:{port['apiserver']}"
    sandbox.prometheus_url = f"http://127.0.0.1:{port['prometheus']}"
    sandbox.simulator_url = f"http://127.0.0.1:{port['simulator']}"
    sandbox.kubeconfig = str(directory / "kubeconfig")
    certs = pki.make(directory / "pki")
    sandbox.ca = str(certs.ca_cert)
    sandbox.audit_log = str(logs / "audit.log")
    configs.token_file(directory / "tokens.csv", sandbox.token)
    configs.kubeconfig(Path(sandbox.kubeconfig), sandbox.apiserver, sandbox.token, certs.ca_cert)
    configs.audit_policy(directory / "audit-policy.yaml")
    configs.prometheus(directory / "prometheus.yml", targets, f"127.0.0.1:{port['simulator']}")
    configs.kwok(directory / "kwok.yaml")
    sa_key = directory / "service-account.key"
    if not sa_key.exists():
        subprocess.run(
            ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
        )

    def launch(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc, popen = processes.start(name, argv, log_dir=logs, cwd=directory)
        sandbox.procs.append(proc)
        sandbox.save()  # saved at once, so `down` can clean up a half-started sandbox
        return popen

    def ready(
        name: str,
        popen: subprocess.Popen[bytes],
        check: Callable[[], bool],
        timeout_s: float = 60.0,
    ) -> None:
        _wait(name, popen, check, timeout_s, str(logs / f"{name}.log"))
        say(f"  {name} ready ({time.monotonic() - began:.1f}s)")

    try:
        etcd_url = f"http://127.0.0.1:{port['etcd']}"
        peer_url = f"http://127.0.0.1:{port['etcd-peer']}"
        popen = launch(
            "etcd",
            [
                which(bins, "etcd"),
                "--name=sandbox",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sandbox={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        ready("etcd", popen, lambda: _http_ok(f"{etcd_url}/health"))

        popen = launch(
            "kube-apiserver",
            [
                which(bins, "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port['apiserver']}",
                f"--tls-cert-file={certs.server.cert}",
                f"--tls-private-key-file={certs.server.key}",
                # The aggregator's client identity towards extension API
                # servers (the metrics adapter), and how they check it.
                f"--requestheader-client-ca-file={certs.front_proxy_ca.cert}",
                # Published for extension API servers, which expect one.
                f"--client-ca-file={certs.ca.cert}",
                f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={certs.front_proxy_client.cert}",
                f"--proxy-client-key-file={certs.front_proxy_client.key}",
                f"--audit-policy-file={directory / 'audit-policy.yaml'}",
                f"--audit-log-path={sandbox.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=100",
                "--audit-log-maxbackup=1",
                f"--token-auth-file={directory / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={configs.SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
            ],
        )
        ready(
            "kube-apiserver",
            popen,
            lambda: _http_ok(f"{sandbox.apiserver}/readyz", sandbox.token, _verifying(sandbox)),
        )

        common = [
            f"--kubeconfig={sandbox.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--authentication-kubeconfig={sandbox.kubeconfig}",
            f"--authorization-kubeconfig={sandbox.kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--profiling=false",
        ]
        kcm = launch(
            "kube-controller-manager",
            [
                which(bins, "kube-controller-manager"),
                *common,
                f"--secure-port={port['kcm']}",
                f"--service-account-private-key-file={sa_key}",
                # Published in every namespace as the kube-root-ca.crt ConfigMap,
                # which is where a pod's ca.crt comes from.
                f"--root-ca-file={certs.ca_cert}",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--concurrent-service-endpoint-syncs=20",
                # The EndpointSlice controller batches updates for this long; 0 keeps
                # the selector-to-endpoints delay at its physical floor.
                "--endpointslice-updates-batch-period=0s",
                # kwok heartbeats node status about every 55 s and keeps no
                # node leases, so the default 50 s grace period would mark every
                # node NotReady (and all pods unready) now and then. The sandbox
                # has no real node failures to detect.
                "--node-monitor-grace-period=1h",
                # HPAs (with `up --metrics`) follow load within seconds.
                "--horizontal-pod-autoscaler-sync-period=2s",
            ],
        )
        scheduler = launch(
            "kube-scheduler",
            [
                which(bins, "kube-scheduler"),
                *common,
                f"--secure-port={port['scheduler']}",
            ],
        )
        kwok = launch(
            "kwok",
            [
                which(bins, "kwok"),
                f"--kubeconfig={sandbox.kubeconfig}",
                f"--config={directory / 'kwok.yaml'}",
                "--manage-all-nodes=true",
                f"--cidr={configs.POD_CIDR}",
                "--node-port=0",
                "--server-address=",
            ],
        )
        prometheus = launch(
            "prometheus",
            [
                which(bins, "prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port['prometheus']}",
                "--web.enable-admin-api",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2d",
                "--log.level=warn",
            ],
        )
        simulator = launch(
            "simulator",
            [
                sys.executable,
                "-m",
                "canary.sandbox.simulator",
                f"--kubeconfig={sandbox.kubeconfig}",
                f"--listen=127.0.0.1:{port['simulator']}",
            ],
        )
        ready(
            "kube-controller-manager",
            kcm,
            lambda: _http_ok(f"https://127.0.0.1:{port['kcm']}/healthz"),
        )
        ready(
            "kube-scheduler",
            scheduler,
            lambda: _http_ok(f"https://127.0.0.1:{port['scheduler']}/healthz"),
        )
        for node in configs.nodes(nodes, pods_per_node):
            _api(sandbox, "POST", "/api/v1/nodes", node)
        ready("kwok", kwok, lambda: _nodes_ready(sandbox) >= nodes)
        ready("prometheus", prometheus, lambda: _http_ok(f"{sandbox.prometheus_url}/-/ready"))
        ready("simulator", simulator, lambda: _http_ok(f"{sandbox.simulator_url}/metrics"))
        if with_metrics:
            config = directory / "adapter.yaml"
            metrics.adapter_config(config)
            cert = metrics.serving_cert(certs.ca, directory / "pki")
            adapter = launch(
                ADAPTER,
                metrics.argv(
                    which(metrics_binary_dir(), "prometheus-adapter"),
                    port["adapter"],
                    cert,
                    sandbox.kubeconfig,
                    sandbox.prometheus_url,
                    config,
                ),
            )
            for path, body in metrics.objects(port["adapter"], certs.ca.cert):
                _api(sandbox, "POST", path, body)
            api_service = (
                f"/apis/apiregistration.k8s.io/v1/apiservices/{metrics.VERSION}.{metrics.GROUP}"
            )
            ready(
                ADAPTER,
                adapter,
                lambda: metrics.available(_api(sandbox, "GET", api_service)),
                timeout_s=90,
            )
    except BaseException:
        processes.stop(list(reversed(sandbox.procs)))
        sandbox.state_path.unlink(missing_ok=True)
        raise
    say(f"sandbox up in {time.monotonic() - began:.1f}s: {directory}")
    return sandbox


def _wait(
    name: str, popen: subprocess.Popen[bytes], check: Callable[[], bool], timeout_s: float, log: str
) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "not ready yet"
    while True:
        code = popen.poll()
        if code is not None:
            raise SandboxError(name, f"exited with code {code}: {_tail(log)}", log)
        try:
            if check():
                return
        except Exception as exc:  # the check's failure is the reason we report
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise SandboxError(name, f"not ready after {timeout_s:.0f}s ({last_error})", log)
        time.sleep(0.1)


def _tail(log: str, lines: int = 5) -> str:
    try:
        return " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
# Only for the health ports of the controller-manager and scheduler, which
# serve certs they sign themselves; the API server's is checked against the CA.
_INSECURE.verify_mode = ssl.CERT_NONE


def _verifying(sandbox: Sandbox) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sandbox.ca)


def _http_ok(url: str, token: str | None = None, context: ssl.SSLContext = _INSECURE) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _api(sandbox: Sandbox, method: str, path: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sandbox.apiserver + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {sandbox.token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10, context=_verifying(sandbox)) as response:
        return json.loads(response.read())


def _nodes_ready(sandbox: Sandbox) -> int:
    listing = _api(sandbox, "GET", "/api/v1/nodes")
    return sum(
        1
        for node in listing.get("items", [])
        for cond in node.get("status", {}).get("conditions", [])
        if cond.get("type") == "Ready" and cond.get("status") == "True"
    )


def status(directory: Path) -> dict[str, Any]:
    sandbox = Sandbox.load(directory.resolve())
    if sandbox is None:
        return {"dir": str(directory), "running": False, "components": {}}
    alive = sandbox.running()
    return {
        "dir": str(sandbox.dir),
        "running": bool(alive) and all(alive.values()),
        "kubeconfig": sandbox.kubeconfig,
        "prometheus_url": sandbox.prometheus_url,
        "components": {
            p.name: {"pid": p.pid, "alive": alive[p.name], "log": p.log} for p in sandbox.procs
        },
    }
