"""What went wrong between the controller and Prometheus, said on one line
on-call can act on: a refusal of our credentials, a redirect that lost
the query, a broken connection, a proxy from the environment, a body that
is not Prometheus's answer. Pure wording over requests' objects."""

from __future__ import annotations

import ast
import email.utils
import json
import re
import time
import urllib.parse
from typing import TYPE_CHECKING

import requests
import requests.utils

if TYPE_CHECKING:
    from analysis.prometheus import PrometheusConfig


def lost_on_redirect(response: requests.Response) -> bool:
    """A refusal where a redirect led that the redirect may have caused: the
    query string or the credentials we sent did not arrive there, or no
    query API is there (404). A redirect that kept both (an ingress's
    http -> https on the same host, a trailing slash) led to Prometheus:
    its 400 is the query's own, its 401 or 403 our credentials'. Taken for
    the redirect's, the start-up check's dialect probe (whose rejection
    says PromQL) failed for good, and the controller never became ready."""
    hops = [r for r in response.history if r.is_redirect]
    status = response.status_code
    if not hops or status not in (400, 401, 403, 404, 422):
        return False
    if status == 404:
        return True
    first, last = hops[0].request, response.request
    if status in (401, 403):
        sent = first.headers.get("Authorization")
        return sent is not None and last.headers.get("Authorization") != sent

    def query(request: requests.PreparedRequest) -> list[str]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(request.url or "").query).get(
            "query", []
        )

    return query(last) != query(first)


def environ_proxy(url: str) -> str:
    """The proxy the environment names for `url`, less its credentials; ""
    for none (or NO_PROXY covers it)."""
    proxies = requests.utils.get_environ_proxies(url)
    scheme = urllib.parse.urlsplit(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all") or ""
    if not proxy:
        return ""
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def transport(exc: requests.RequestException) -> str:
    """What broke the connection, on one line: refused, a name that does not
    resolve, a TLS handshake, a body cut short, a timeout. Before, only the
    exception's type ("ConnectionError"), the same for all of them; its
    whole text holds the query's URL."""
    cause: BaseException = exc
    while True:
        inner = getattr(cause, "reason", None)  # urllib3's MaxRetryError
        if isinstance(inner, BaseException):
            cause = inner
        elif cause.args and isinstance(cause.args[0], BaseException):
            cause = cause.args[0]
        else:
            break
    text = cause.args[0] if cause.args and isinstance(cause.args[0], str) else str(cause)
    if isinstance(cause, OSError) and cause.strerror:
        text = str(cause)
    # "HTTPConnection(host='p', port=9090): Failed to ..." less the pool.
    text = " ".join(re.sub(r"^\w+\(host=[^)]*\):\s*", "", text).split())[:300]
    said = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        said += (
            "; check the URL's scheme (https to a port that speaks http?) and "
            "--prometheus-ca (the CA that signed its certificate)"
        )
    return said


def retry_after(response: requests.Response) -> float | None:
    """The seconds a Retry-After header asks for (a number, or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def credentials(config: PrometheusConfig) -> str:
    """Which credentials the adapter sends, named as on-call configures them."""
    if config.bearer_token_file:
        return f"the token in {config.bearer_token_file} (read again when it changes)"
    if config.bearer_token:
        return "PROMETHEUS_TOKEN (read once, at start)"
    if config.username:
        return "PROMETHEUS_USERNAME/PROMETHEUS_PASSWORD"
    return "no credentials"


def refused(config: PrometheusConfig, text: str) -> str:
    """Our credentials refused, by Prometheus or by what stands in front of
    it (kube-rbac-proxy, an OAuth proxy, a gateway): no retry makes them
    good, and Prometheus is not down. Reported as "unavailable" (retried
    as its trouble), the halt sent on-call looking for an outage that was
    not there. Says what was sent and what to change."""
    status = 401 if "HTTP Status Code 401" in text else 403
    said = reason(text)
    said = said if said.startswith(f"HTTP {status}") else f"HTTP {status}: {said}"
    sent = credentials(config)
    if status == 401:
        fix = (
            "read again after the 401, it is still refused: check what writes the file"
            if config.bearer_token_file
            else "a token that expires needs a file read again as it rotates "
            "(--prometheus-token-file, PROMETHEUS_TOKEN_FILE)"
        )
        return (
            f"Prometheus at {config.url} refused the controller's credentials "
            f"({said}); it sent {sent}: {fix}"
        )
    return (
        f"Prometheus at {config.url} forbids the controller's queries ({said}); "
        f"it sent {sent}: grant that identity access to the query API "
        "(for a kube-rbac-proxy, what its SubjectAccessReview checks)"
    )


def reason(text: str) -> str:
    """Prometheus's own error message, whole. The library formats it as
    `HTTP Status Code 400 (b'{"status":"error",...}')`: read the body back
    instead of cutting at the first quote (messages quote the query). A
    body that is not Prometheus's JSON (a proxy's, an ingress's 502 page)
    is said as its status and a line of its text: before, 2,000 characters
    of markup as a bytes literal in each metric's error filled the halt's
    Event (1,024 kept) and cut what to do from it."""
    found = re.fullmatch(r"HTTP Status Code (\d+) \((b.*)\)", text, re.S)
    if found is None:
        return text[:2000]
    try:
        body = ast.literal_eval(found.group(2))
    except (ValueError, SyntaxError):
        return text[:2000]
    if not isinstance(body, bytes):
        return text[:2000]
    try:
        error = json.loads(body).get("error")
        if isinstance(error, str) and error:
            return error
    except (ValueError, AttributeError):
        pass
    said = body_text(body)
    return f"HTTP {found.group(1)}: {said}" if said else f"HTTP {found.group(1)}"


def body_text(body: bytes) -> str:
    """What a body says, on one line: an HTML page's title (else its text
    without the markup), any other text as it is; cut at 300 characters."""
    text = body.decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
    if title and title.group(1).strip():
        text = title.group(1)
    elif "<" in text:
        text = re.sub(r"<!--.*?-->|<[^>]*>", " ", text, flags=re.S)
    return " ".join(text.split())[:300]
