"""The controller's connection to Prometheus over a long life, against a
tiny HTTP server on 127.0.0.1 (never another address) that answers as the
things in front of a real Prometheus do: a kube-rbac-proxy checking a
bearer token that rotates, an nginx refusing a long request line, a login
page instead of the API. Each test failed on the code before its fix."""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from analysis.prometheus import Prometheus, PrometheusConfig
from analysis.provider import QueryError


@dataclass
class Asked:
    """One request as the server saw it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    line_length: int  # the request line's length, as nginx counts it


# (status, headers, body) for a request.
Answer = tuple[int, dict[str, str], bytes]


def vector(value: str) -> Answer:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1.0, value]}
    ]}}  # fmt: skip
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def scalar_time() -> Answer:
    import time

    now = time.time()
    body = {"status": "success", "data": {"resultType": "scalar", "result": [now, f"{now:.3f}"]}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@dataclass
class Server:
    answer: Callable[[Asked], Answer]
    asked: list[Asked] = field(default_factory=list)
    url: str = ""

    def queries(self) -> list[Asked]:
        """What was asked, less the clock probes (`time()` at Prometheus's now)."""
        return [a for a in self.asked if a.params.get("query") != "time()"]


@pytest.fixture
def prometheus_server() -> Iterator[Callable[[Callable[[Asked], Answer]], Server]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[Asked], Answer]) -> Server:
        server = Server(answer)

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                query = split.query
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length).decode()
                    query = f"{query}&{body}" if query else body
                asked = Asked(
                    self.command,
                    split.path,
                    dict(urllib.parse.parse_qsl(query)),
                    {k: v for k, v in self.headers.items()},
                    len(self.requestline),
                )
                server.asked.append(asked)
                if asked.params.get("query") == "time()" and "time" not in asked.params:
                    status, headers, body_ = scalar_time()
                else:
                    status, headers, body_ = server.answer(asked)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body_)))
                self.end_headers()
                self.wfile.write(body_)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        return server

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _unauthorized() -> Answer:
    # kube-rbac-proxy's answer to a token the API server's TokenReview rejects.
    return 401, {"Content-Type": "text/plain"}, b"Unauthorized\n"


def _behind_tokens(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
    token: Path,
    first: str,
    value: str = "1",
) -> tuple[set[str], Server, Prometheus]:
    """A Prometheus that answers `value` to the tokens in the returned set
    (`first` to begin with) and 401 to others, and the adapter reading its
    token from `token`, which holds `first`."""
    valid = {first.strip()}
    token.write_text(first)

    def answer(asked: Asked) -> Answer:
        if asked.headers.get("Authorization", "").removeprefix("Bearer ") not in valid:
            return _unauthorized()
        return vector(value)

    server = prometheus_server(answer)
    return valid, server, Prometheus(PrometheusConfig(url=server.url, bearer_token_file=str(token)))


# -- a bearer token that rotates -------------------------------------------------------------


async def test_a_rotated_token_file_is_read_again_without_a_restart(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server], tmp_path: Path
) -> None:
    # OpenShift's thanos-querier (kube-rbac-proxy) takes the controller's
    # ServiceAccount token, a projected token the kubelet replaces before it
    # expires (an hour); Vault rotates a Secret's token likewise. Read once at
    # the start (PROMETHEUS_TOKEN), it expired, and every query was a 401
    # until the controller restarted: every rollout halted, its canary
    # serving unanalysed. The file is read again when it changes.
    token = tmp_path / "token"
    valid, server, prom = _behind_tokens(prometheus_server, token, "token-1\n")
    try:
        assert await prom.query("vector(1)", None, 5.0) == 1.0
        # The kubelet swaps the projected volume's data (a new file behind
        # the ..data symlink): a new token, and the old one expires.
        token.write_text("token-2-longer\n")
        valid.clear()
        valid.add("token-2-longer")
        assert await prom.query("vector(1)", None, 5.0) == 1.0
        assert server.queries()[-1].headers["Authorization"] == "Bearer token-2-longer"
    finally:
        prom.close()


async def test_a_401_reads_the_token_file_again_even_when_it_looks_unchanged(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server], tmp_path: Path
) -> None:
    # A token rewritten in place within the file system's timestamp
    # granularity, with the same length (a Vault agent's template), looks
    # the same to stat(): the 401 it then gets has it read again, and the
    # query is sent once more with the new token.
    token = tmp_path / "token"
    valid, _, prom = _behind_tokens(prometheus_server, token, "aaaa", value="2")
    try:
        assert await prom.query("vector(2)", None, 5.0) == 2.0
        seen = os.stat(token)
        token.write_text("bbbb")
        os.utime(token, ns=(seen.st_atime_ns, seen.st_mtime_ns))
        valid.clear()
        valid.add("bbbb")
        assert await prom.query("vector(2)", None, 5.0) == 2.0
    finally:
        prom.close()


async def test_a_token_file_that_cannot_be_read_is_an_error_naming_it(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server], tmp_path: Path
) -> None:
    server = prometheus_server(lambda asked: vector("1"))
    missing = tmp_path / "nowhere" / "token"
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token_file=str(missing)))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
        assert str(missing) in str(raised.value)
        assert not server.queries()  # nothing sent without the credentials
    finally:
        prom.close()


async def test_a_token_file_emptied_mid_write_keeps_the_last_token(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server], tmp_path: Path
) -> None:
    # A writer that truncates then writes (not the kubelet's atomic swap):
    # read in between, the file is empty. The last token is sent, not an
    # empty one, and the file is read again at the next query.
    token = tmp_path / "token"
    token.write_text("token-1")
    server = prometheus_server(lambda asked: vector("1"))
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token_file=str(token)))
    try:
        await prom.query("vector(1)", None, 5.0)
        token.write_text("")
        await prom.query("vector(1)", None, 5.0)
        assert server.queries()[-1].headers["Authorization"] == "Bearer token-1"
        token.write_text("token-2")
        await prom.query("vector(1)", None, 5.0)
        assert server.queries()[-1].headers["Authorization"] == "Bearer token-2"
    finally:
        prom.close()


def test_the_token_file_is_configured_by_flag_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from canary import cli
    from canary.commands import prometheus_config

    monkeypatch.delenv("PROMETHEUS_TOKEN", raising=False)
    monkeypatch.setenv("PROMETHEUS_TOKEN_FILE", "/var/run/secrets/tokens/prometheus")
    assert prometheus_config("http://p:9090").bearer_token_file == (
        "/var/run/secrets/tokens/prometheus"
    )
    config = prometheus_config("http://p:9090", token_file="/etc/prom/token")
    assert config.bearer_token_file == "/etc/prom/token"
    args = cli.build_parser().parse_args(["run", "--prometheus-token-file", "/etc/prom/token"])
    assert args.prometheus_token_file == "/etc/prom/token"


def test_a_token_and_a_token_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As Prometheus refuses `bearer_token` beside `bearer_token_file`: which
    # one is sent would be a guess, and the static one is what expires.
    from canary import cli, telemetry

    monkeypatch.setattr(telemetry, "configure_logging", lambda log_format: None)
    monkeypatch.setenv("PROMETHEUS_TOKEN", "static")
    monkeypatch.setenv("PROMETHEUS_URL", "http://p:9090")
    args = cli.build_parser().parse_args(["run", "--prometheus-token-file", "/etc/prom/token"])
    assert args.func(args) == 2
    assert "PROMETHEUS_TOKEN" in capsys.readouterr().err


# -- credentials refused ---------------------------------------------------------------------


async def test_a_401_says_the_credentials_were_refused_and_how_to_fix_them(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # An expired PROMETHEUS_TOKEN behind a kube-rbac-proxy: every query is
    # a 401. Before, it was retried as Prometheus trouble (three requests a
    # query, each a TokenReview on the API server) and reported as
    # "Prometheus at ... unavailable", which is not what was seen: the
    # halt's Event sent on-call looking for a Prometheus that was up.
    server = prometheus_server(lambda asked: _unauthorized())
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token="expired"))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "unavailable" not in message
    assert "401" in message and "credentials" in message
    assert "--prometheus-token-file" in message
    assert not raised.value.rejected  # not the query's fault: error-limit, then a halt
    assert len(server.queries()) == 1


async def test_a_403_says_who_is_forbidden_as_the_proxy_said_it(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # kube-rbac-proxy's SubjectAccessReview said no (the ClusterRoleBinding
    # missing): its answer names the user and the verb it checked.
    forbidden = (
        b"Forbidden (user=system:serviceaccount:canary-system:canary, verb=get, "
        b"resource=namespaces, subresource=)\n"
    )
    server = prometheus_server(lambda asked: (403, {"Content-Type": "text/plain"}, forbidden))
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token="sa-token"))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "unavailable" not in message
    assert "403" in message and "user=system:serviceaccount:canary-system:canary" in message
    assert "b'" not in message  # the proxy's words, not a Python bytes literal
    assert len(server.queries()) == 1


# -- a query longer than the request line a proxy takes ---------------------------------------


def _nginx(asked: Asked) -> Answer:
    # nginx (an ingress, a Mimir gateway) takes a request line of up to
    # 8 KiB (large_client_header_buffers 4 8k): longer, it answers 414.
    if asked.line_length > 8192:
        return 414, {"Content-Type": "text/html"}, b"<html><h1>414 Request-URI Too Large</h1>"
    if asked.path.endswith("/query_range"):
        body = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "3"], [2.0, "4"]]}
        ]}}  # fmt: skip
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
    return vector("7")


def _per_pod_query(pods: int) -> str:
    # As canary-pods-unseen writes a canary of `pods` pods (names_regex).
    names = "|".join(f"{i:05x}" for i in range(pods))
    selector = f'{{namespace="shop",pod=~"web-green-5f1c2a9e0b-({names})"}}'
    seen = f"count by (pod) (count_over_time(http_requests_total{selector}[5m]))"
    return f"count({seen} unless {seen.replace('[5m]', '[30s]')})"


async def test_a_query_too_long_for_the_url_is_sent_in_a_form_body(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # The per-pod checks of a canary past some 300 pods: the URL is over
    # 8 KiB, and the nginx in front of Prometheus answered 414 to each, so
    # canary-pods-unseen and canary-pods-never-scraped never answered and
    # the window's pass stood (a pod whose scrapes fail was never unseen).
    # prometheus-api-client's method="POST" still puts the query in the
    # URL: the form body is ours. Prometheus, Thanos, Mimir and
    # VictoriaMetrics all read it.
    server = prometheus_server(_nginx)
    prom = Prometheus(PrometheusConfig(url=server.url + "/prometheus"))
    long = _per_pod_query(1200)
    assert len(long) > 8192
    try:
        assert await prom.query(long, 1000.0, 5.0) == 7.0
        assert await prom.query_range(long, 1000.0, 1060.0, 30.0, 5.0) == [3.0, 4.0]
    finally:
        prom.close()
    posted = [a for a in server.queries() if a.method == "POST"]
    paths = ["/prometheus/api/v1/query", "/prometheus/api/v1/query_range"]
    assert [a.path for a in posted] == paths
    assert all(a.params["query"] == long for a in posted)
    assert posted[0].params["time"] and posted[0].params["timeout"] == "5s"
    assert posted[1].params["start"] and posted[1].params["step"] == "30s"


async def test_a_short_query_is_still_a_get(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A kube-rbac-proxy authorizes a POST as the verb `create`: a role
    # granting `get` (what the queries needed so far) would refuse it.
    server = prometheus_server(_nginx)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        assert await prom.query(_per_pod_query(3), 1000.0, 5.0) == 7.0
    finally:
        prom.close()
    assert [a.method for a in server.queries()] == ["GET"]


async def test_a_get_answered_414_below_8_kib_is_sent_again_in_a_form_body(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A proxy with a smaller limit than nginx's (4 KiB).
    def small(asked: Asked) -> Answer:
        if asked.line_length > 4096:
            return 414, {"Content-Type": "text/plain"}, b"URI Too Long"
        return vector("5")

    server = prometheus_server(small)
    prom = Prometheus(PrometheusConfig(url=server.url))
    query = _per_pod_query(300)
    assert 4096 < len(urllib.parse.urlencode({"query": query})) < 7000
    try:
        assert await prom.query(query, 1000.0, 5.0) == 5.0
    finally:
        prom.close()
    assert [a.method for a in server.queries()] == ["GET", "POST"]


async def test_a_long_query_redirected_is_an_error_naming_where_not_a_query_to_fix(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A 301 or 302 (an ingress's http -> https, a trailing-slash rule) makes
    # requests send a POST again as a GET without its body: Prometheus
    # would answer 400 "no expression found", read as the spec's fault.
    def redirect(asked: Asked) -> Answer:
        if not asked.path.endswith("/"):
            return 301, {"Location": "/api/v1/query/"}, b""
        if "query" not in asked.params:
            error = {"status": "error", "errorType": "bad_data", "error": "no expression found"}
            return 400, {"Content-Type": "application/json"}, json.dumps(error).encode()
        return vector("1")

    server = prometheus_server(redirect)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query(_per_pod_query(1200), 1000.0, 5.0)
    finally:
        prom.close()
    assert not raised.value.rejected
    assert "/api/v1/query/" in str(raised.value)
    assert [a.method for a in server.queries()] == ["POST"]


# -- answers that are not Prometheus's JSON --------------------------------------------------

LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Log In</title>\n</head>\n"
    b"<body><form action='/oauth/start'>" + b"x" * 3000 + b"</form></body></html>"
)


async def test_a_login_page_instead_of_the_api_says_so(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # An OAuth proxy in front of Prometheus without credentials (or a URL
    # pointing at a UI) answers 200 with its login page. Before: "Prometheus
    # at ... unavailable: JSONDecodeError", which names neither what
    # answered nor what to check.
    server = prometheus_server(lambda asked: (200, {"Content-Type": "text/html"}, LOGIN_PAGE))
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "unavailable" not in message and "JSONDecodeError" not in message
    assert "text/html" in message and "Log In" in message and "--prometheus-url" in message
    assert len(message) < 600
    assert not raised.value.rejected


async def test_json_that_is_not_a_query_answer_is_a_query_error_not_a_crash(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # Another JSON API at the URL (a gateway's own status, a UI's API):
    # before, `["data"]` raised a KeyError out of the adapter, and the whole
    # analysis "crashed" (every metric's measurement lost, a traceback a
    # check) instead of one error saying what answered.
    body = json.dumps({"message": "no route for /api/v1/query"}).encode()
    server = prometheus_server(lambda asked: (200, {"Content-Type": "application/json"}, body))
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    assert "no route for /api/v1/query" in str(raised.value)


async def test_an_ingress_error_page_is_said_in_a_line(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A 502 from the ingress while Prometheus restarts: still Prometheus
    # trouble (retried, then an error), but said as a line on-call reads,
    # not 2,000 characters of HTML as a bytes literal in every metric's
    # error, which filled the RolloutHalted Event (1,024 characters) with
    # markup and cut what to do from it.
    page = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        + b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6
        + b"</body>\r\n</html>\r\n"
    )
    server = prometheus_server(lambda asked: (502, {"Content-Type": "text/html"}, page))
    prom = Prometheus(PrometheusConfig(url=server.url, attempts=2))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "502 Bad Gateway" in message and "b'" not in message and "<html>" not in message
    assert len(message) < 300
    assert len(server.queries()) == 2  # retried: Prometheus may be back


# -- asked to come back later ----------------------------------------------------------------


async def test_a_429_is_tried_again_after_the_retry_after_it_gives(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A query frontend (Mimir, Cortex, Thanos) over its queue answers 429
    # "too many outstanding requests" with Retry-After: 1. Before, the
    # adapter's own backoff (0.1 s, 0.2 s) spent its three tries within
    # 0.3 s, each refused again, and the check was an error towards
    # error-limit (with on-limit: rollback, a good release rolled back for
    # a frontend that asked for a second) though it had 5 s to answer.
    import time

    first: list[float] = []

    def busy(asked: Asked) -> Answer:
        first.append(first[0] if first else time.monotonic())
        if time.monotonic() - first[0] < 1.0:
            return (
                429,
                {"Content-Type": "text/plain", "Retry-After": "1"},
                b"too many outstanding requests\n",
            )
        return vector("9")

    server = prometheus_server(busy)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        assert await prom.query("vector(9)", None, 5.0) == 9.0
    finally:
        prom.close()
    assert len(server.queries()) == 2  # once, then after the second it asked for


async def test_a_retry_after_past_the_query_timeout_is_not_waited_for(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # Come back in 2 minutes, with 5 s to answer: an error now (the next
    # check asks again), not two more refused tries nor a wait past the
    # check's own timeout.
    import time

    def busy(asked: Asked) -> Answer:
        return 429, {"Content-Type": "text/plain", "Retry-After": "120"}, b"slow down\n"

    server = prometheus_server(busy)
    prom = Prometheus(PrometheusConfig(url=server.url))
    began = time.monotonic()
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(9)", None, 5.0)
    finally:
        prom.close()
    assert time.monotonic() - began < 2.0
    assert "429" in str(raised.value) and "slow down" in str(raised.value)
    assert len(server.queries()) == 1


# -- a URL that is not Prometheus's API ------------------------------------------------------


async def test_a_404_says_the_url_has_no_query_api_and_how_to_fix_it(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # Prometheus run with --web.route-prefix=/prometheus (or behind an
    # ingress path), its URL given without the prefix: every query is a
    # 404. Before, retried three times as Prometheus trouble and reported
    # as "Prometheus at ... unavailable: ... 404 page not found", an outage
    # no restart ends.
    def prefixed(asked: Asked) -> Answer:
        if not asked.path.startswith("/prometheus/"):
            return 404, {"Content-Type": "text/plain"}, b"404 page not found\n"
        return vector("1")

    server = prometheus_server(prefixed)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "unavailable" not in message
    assert "404" in message and "/api/v1/query" in message and "--prometheus-url" in message
    assert not raised.value.rejected
    assert len(server.queries()) == 1
    prom = Prometheus(PrometheusConfig(url=server.url + "/prometheus/"))
    try:
        assert await prom.query("vector(1)", None, 5.0) == 1.0
    finally:
        prom.close()


# -- what broke the connection ---------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _error_of(url: str) -> str:
    prom = Prometheus(PrometheusConfig(url=url, attempts=1))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 2.0)
    finally:
        prom.close()
    return str(raised.value)


async def test_a_refused_connection_says_so() -> None:
    # Prometheus restarting (its port closed), a NetworkPolicy rejecting
    # the controller's egress. Before: "unavailable: ConnectionError", the
    # same words for a name that does not resolve and a refused port.
    message = await _error_of(f"http://127.0.0.1:{_closed_port()}")
    assert "Connection refused" in message
    assert "query=" not in message and len(message) < 400


async def test_a_connection_cut_mid_answer_says_so(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # Prometheus killed mid-answer (OOM on a heavy query): the body ends
    # before its Content-Length. Before: "unavailable: ChunkedEncodingError".
    def cut(asked: Asked) -> Answer:
        return 200, {"Content-Type": "application/json", "Content-Length": "1000"}, b"{}"

    server = prometheus_server(cut)
    message = await _error_of(server.url)
    assert "IncompleteRead" in message or "Connection broken" in message


async def test_tls_trouble_says_what_and_where_to_look(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # https:// to a port that speaks HTTP (or a certificate no CA we trust
    # signed): before, "unavailable: SSLError" only.
    server = prometheus_server(lambda asked: vector("1"))
    message = await _error_of(server.url.replace("http://", "https://"))
    assert "SSL" in message and "--prometheus-ca" in message


# -- redirected ------------------------------------------------------------------------------


async def test_a_redirect_that_drops_the_query_is_not_the_specs_fault(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # A rule in front of Prometheus adds a trailing slash and drops the
    # query string: Prometheus answers the bare GET 400 "bad_data", which
    # was read as the query's own fault: an InvalidSpec-style halt telling
    # the team to fix a query that is fine.
    def slash(asked: Asked) -> Answer:
        if not asked.path.endswith("/"):
            return 302, {"Location": asked.path + "/"}, b""
        if "query" not in asked.params:
            error = {
                "status": "error",
                "errorType": "bad_data",
                "error": 'invalid parameter "query"',
            }
            return 400, {"Content-Type": "application/json"}, json.dumps(error).encode()
        return vector("1")

    server = prometheus_server(slash)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    assert not raised.value.rejected and not raised.value.invalid
    assert "redirect" in str(raised.value) and "/api/v1/query/" in str(raised.value)


async def test_a_redirect_to_another_port_says_the_credentials_were_not_sent_on(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # http://prometheus:9090 redirecting to https on another port (or
    # another host): requests sends no Authorization there, and the 401
    # read "refused the controller's credentials", which were never sent.
    def guarded(asked: Asked) -> Answer:
        if asked.headers.get("Authorization") != "Bearer secret":
            return _unauthorized()
        return vector("1")

    target = prometheus_server(guarded)
    front = prometheus_server(
        lambda asked: (301, {"Location": target.url + asked.path + "?query=vector%281%29"}, b"")
    )
    prom = Prometheus(PrometheusConfig(url=front.url, bearer_token="secret"))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "redirect" in message and target.url in message and "--prometheus-url" in message


# -- through the environment's proxy ---------------------------------------------------------


async def test_an_answer_from_the_environments_proxy_names_the_proxy(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OpenShift's cluster-wide proxy puts HTTP_PROXY/HTTPS_PROXY/NO_PROXY in
    # an operator's pods; requests honours them, as Go clients do. A
    # Prometheus URL NO_PROXY does not cover (a short name,
    # `prometheus.monitoring:9090`, where NO_PROXY lists `.svc`) goes
    # through the egress proxy, which refuses it with its own 403 page.
    # Before, that read "Prometheus ... forbids the controller's queries:
    # grant that identity access", nothing naming the proxy that answered.
    squid = (
        b"<html><head><title>ERROR: The requested URL could not be retrieved</title></head></html>"
    )
    proxy = prometheus_server(lambda asked: (403, {"Content-Type": "text/html"}, squid))
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:pw@"))
    monkeypatch.setenv("http_proxy", proxy.url.replace("http://", "http://user:pw@"))
    prom = Prometheus(PrometheusConfig(url="http://prometheus.monitoring:9090"))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert proxy.url in message and "NO_PROXY" in message
    assert "pw" not in message  # the proxy's credentials are not told
    assert proxy.queries()  # it went there, and nowhere else


# -- not answered since the start ------------------------------------------------------------


class _Failing:
    """A start-up check that fails with each error in turn, then answers."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    async def check(self) -> None:
        if self.errors:
            raise QueryError(self.errors.pop(0))


async def test_a_new_reason_prometheus_does_not_answer_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The controller starts while Prometheus restarts (refused: logged by the
    # first check); Prometheus comes back, and now refuses the token. Before,
    # only the first reason was ever logged: on-call read "Connection
    # refused" while the replica stayed not ready on a 401.
    import asyncio
    import logging

    from canary import run

    refused = "Prometheus at http://p:9090 unavailable: ConnectionError: Connection refused"
    unauthorized = "Prometheus at http://p:9090 refused the controller's credentials (HTTP 401)"
    provider = _Failing([refused, unauthorized, unauthorized, unauthorized])
    answered = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="canary.run"):
        await asyncio.wait_for(
            run.until_answered(provider, answered, every_s=0.001, told=refused),  # type: ignore[arg-type]
            2.0,
        )
    assert answered.is_set()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(unauthorized in line for line in logged) == 1
    assert not any(refused in line for line in logged)


# -- a token with a newline ------------------------------------------------------------------


async def test_a_token_with_a_trailing_newline_is_sent_without_it(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # `kubectl create secret generic --from-file=token` of a file that ends
    # in a newline, given as PROMETHEUS_TOKEN (secretKeyRef): requests
    # refuses a header value with a newline, and every query failed as
    # "Prometheus at ... unavailable: InvalidHeader" while Prometheus was
    # up. Prometheus trims its own bearer_token_file so.
    def guarded(asked: Asked) -> Answer:
        if asked.headers.get("Authorization") != "Bearer secret-token":
            return _unauthorized()
        return vector("1")

    server = prometheus_server(guarded)
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token="secret-token\n"))
    try:
        assert await prom.query("vector(1)", None, 5.0) == 1.0
    finally:
        prom.close()


async def test_a_token_that_cannot_be_a_header_is_not_told(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # requests' own error quotes the header's value: said with the error,
    # the token would be in every Event, status and log line.
    server = prometheus_server(lambda asked: vector("1"))
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token="first-half\nsecond-half"))
    try:
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert "first-half" not in message and "second-half" not in message
    assert "PROMETHEUS_TOKEN" in message


def test_backtest_reaches_prometheus_as_run_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # On-call replays a release against the Prometheus the controller reads:
    # one with a private CA or a rotated token file. backtest had only
    # --prometheus-url, so it could not reach it (found by review).
    from canary import cli
    from canary.commands import backtest_prometheus

    monkeypatch.delenv("PROMETHEUS_TOKEN", raising=False)
    monkeypatch.delenv("PROMETHEUS_TOKEN_FILE", raising=False)
    args = cli.build_parser().parse_args(
        [
            "backtest",
            "web",
            "--from=-2h",
            "--prometheus-url",
            "https://prom:9091",
            "--prometheus-ca",
            "/etc/prom/ca.crt",
            "--prometheus-insecure",
            "--prometheus-token-file",
            "/etc/prom/token",
        ]
    )
    config = backtest_prometheus(args, "https://prom:9091")
    assert (config.ca_file, config.insecure, config.bearer_token_file) == (
        "/etc/prom/ca.crt",
        True,
        "/etc/prom/token",
    )


# -- found by the combined review --------------------------------------------------------------


async def test_a_token_still_refused_after_a_401_is_read_again_is_no_redirect(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server], tmp_path: Path
) -> None:
    # The 401 hook sends the query once more with the token read again, and
    # puts the first answer in the history, as a redirect does: the second
    # 401 (the new token refused too) was said as "redirects to <the same
    # URL>, which answered 401: a redirect sends no credentials...", though
    # nothing redirected and the credentials were sent. On-call was told to
    # change --prometheus-url, not what writes the token file.
    token = tmp_path / "token"
    valid, server, prom = _behind_tokens(prometheus_server, token, "aaaa")
    try:
        assert await prom.query("vector(1)", None, 5.0) == 1.0
        seen = os.stat(token)
        token.write_text("bbbb")  # in place, same size and time: read again on the 401
        os.utime(token, ns=(seen.st_atime_ns, seen.st_mtime_ns))
        valid.clear()  # and refused too (a token for another audience)
        with pytest.raises(QueryError) as raised:
            await prom.query("vector(1)", None, 5.0)
    finally:
        prom.close()
    message = str(raised.value)
    assert [a.headers["Authorization"] for a in server.queries()[-2:]] == [
        "Bearer aaaa",
        "Bearer bbbb",
    ]
    assert "redirect" not in message, message
    assert "refused the controller's credentials" in message and str(token) in message


async def test_a_redirect_that_keeps_the_query_leaves_a_rejection_the_querys(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # An ingress redirecting http:// to https:// (here: to a trailing
    # slash), the query string kept: Prometheus answers there, and its 400
    # is the query's own. Taken for the redirect's fault, the start-up
    # check's dialect probe (MetricsQL's increase_prometheus(), which
    # Prometheus rejects: that rejection is what says PromQL) failed for
    # good: the controller never became ready and every check was an error,
    # where before today every query followed the redirect. A query the
    # spec got wrong was likewise an error, never the InvalidSpec halt.
    def slash(asked: Asked) -> Answer:
        if not asked.path.endswith("/"):
            kept = urllib.parse.urlencode(asked.params)
            return 301, {"Location": f"{asked.path}/?{kept}"}, b""
        if "increase_prometheus" in asked.params.get("query", "") or "sum(" in asked.params.get(
            "query", ""
        ):
            error = {"status": "error", "errorType": "bad_data", "error": "unknown function"}
            return 400, {"Content-Type": "application/json"}, json.dumps(error).encode()
        return vector("1")

    server = prometheus_server(slash)
    prom = Prometheus(PrometheusConfig(url=server.url))
    try:
        await prom.check()
        assert prom.metricsql is False
        with pytest.raises(QueryError) as raised:
            await prom.query("sum(rate(nope[1m]))", None, 5.0)
    finally:
        prom.close()
    assert raised.value.rejected and raised.value.invalid, str(raised.value)
    assert "redirect" not in str(raised.value)


async def test_a_long_query_a_kube_rbac_proxy_refuses_as_a_post_is_sent_as_a_get(
    prometheus_server: Callable[[Callable[[Asked], Answer]], Server],
) -> None:
    # OpenShift's thanos-querier (kube-rbac-proxy, a Go server: it takes a
    # request line of up to 1 MiB) authorizes a POST as the verb `create`,
    # which the role granting the queries' `get` refuses. A query over
    # 8,000 bytes (the per-pod checks of a canary past some 300 pods) was
    # sent as a POST at once, refused 403 at every check, and the vouching
    # query unanswered is an error now: a healthy rollout halted past
    # error-limit, where before the long GET was answered. The GET is sent
    # then, and long queries go as GETs first from then on.
    def rbac_proxy(asked: Asked) -> Answer:
        if asked.method == "POST":
            forbidden = (
                b"Forbidden (user=system:serviceaccount:canary-system:canary, verb=create, "
                b"resource=namespaces, subresource=)\n"
            )
            return 403, {"Content-Type": "text/plain"}, forbidden
        return vector("4")

    server = prometheus_server(rbac_proxy)
    prom = Prometheus(PrometheusConfig(url=server.url, bearer_token="sa-token"))
    long = _per_pod_query(1200)
    try:
        assert await prom.query(long, 1000.0, 5.0) == 4.0
        assert await prom.query(long, 1030.0, 5.0) == 4.0
    finally:
        prom.close()
    assert [a.method for a in server.queries()] == ["POST", "GET", "GET"]
