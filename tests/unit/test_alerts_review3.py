"""The controller's alerts as an adversarial review found them wrong
(third pass); each test failed before its fix."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from analysis.gates import Webhooks
from analysis.run import StepContext
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from canary.checks import Checks, _time_given
from tests.unit.test_alerts_bad_day import _SlowPrometheus
from tests.unit.test_operating_bad_day import _alerts, _promtool_case

# -- 1. a check waiting its turn behind other Services' checks pages "stuck" ---------------------


def _ctx(service: str, now: float) -> StepContext:
    target = Target("shop", service, "green", f"{service}-green-abc")
    return StepContext(target, None, now - 60.0, now, 60.0, scrape_s=15.0)


def test_a_check_queued_behind_other_services_checks_is_given_its_wait() -> None:
    """At most 32 Services' checks run at once (Checks' limit); the rest
    wait for a slot, and their own deadline (query-timeouts) starts only
    then. CanaryRolloutStuck reads as the next decision of a rollout whose
    check is in flight when that check must be back (finish_by), and that
    counted from when the check was asked: the 33rd of a release to many
    Services at once, behind 32 checks of a Prometheus answering slowly but
    within `query-timeout: 60s` (185 s each), was exported as due at 185 s
    and came back at up to 370 s, so a controller working through its queue
    paged on-call (critical) as stuck and sent them to its logs and API
    errors. A queued check is due once enough of those ahead of it must
    have given their slot back, and its own time after that."""
    spec = AnalysisSpec(query_timeout=60.0)
    given = _time_given(spec)
    assert given == 185.0

    async def scenario() -> tuple[float, float]:
        checks = Checks(_SlowPrometheus(), Webhooks(), lambda key: None)
        try:
            now = time.time()
            for i in range(32):
                checks.start_analysis(
                    ("shop", f"s{i}"), ("r2", 0), "scheduled", spec, _ctx(f"s{i}", now)
                )
            checks.start_analysis(("shop", "last"), ("r2", 0), "scheduled", spec, _ctx("last", now))
            for _ in range(20):
                await asyncio.sleep(0)  # 32 checks take the slots; the last one waits
            assert checks._limit.locked()
            ahead = min(checks.finish_by(("shop", f"s{i}")) or 0.0 for i in range(32))
            return ahead, (checks.finish_by(("shop", "last")) or 0.0)
        finally:
            await checks.close()

    slots_free, last = asyncio.run(scenario())
    # It may get no slot before the first of those ahead must be back
    # (`slots_free`), and may then take its own 185 s.
    assert last >= slots_free + given - 1.0, (
        f"exported as due {last - slots_free:.0f}s after the checks ahead of it must be back; "
        f"it may take {given:g}s once it has a slot"
    )


# -- 2. two installs' API errors summed: one pages for the other, or hides in it -----------------


def test_api_errors_page_by_install(tmp_path: Path) -> None:
    """Two installs of the controller (one per group of teams, each in its
    own namespace) export canary_api_errors_total each, scraped with the
    namespace of their pods. CanaryAPIErrors summed them by status alone:
    each install's stray conflicts (retried at once, as designed, below the
    threshold of one) added up to a page naming no install; an install's
    403s paged without saying which install's ClusterRole to fix; and once
    firing for one install, the other's errors starting later raised
    nothing new. By the controller's namespace, as the other controller
    alerts are."""
    _promtool_case(tmp_path, "two installs, API errors in each")


# -- 3. a kubectl command an alert gives that does not run as written ----------------------------

# kubectl's flags that take a value, as the alerts use them.
_KUBECTL_VALUED = {"-n", "--namespace", "-l", "--selector", "-c", "--container", "--tail"}


def test_every_kubectl_command_an_alert_gives_runs_as_written() -> None:
    """On-call copies the command an alert gives. CanaryControllerNotReady,
    for a replica crash-looping, said `kubectl logs --previous`: kubectl
    refuses it ("expected 'logs [-f] [-p] (POD | TYPE/NAME)'"), and without
    -n it reads the context's namespace, not the controller's. Each
    `kubectl logs` or `describe` an alert gives names what it reads (a pod,
    or a label selector) and the namespace, from the alert's labels."""
    labels = {"service": "web", "namespace": "shop", "pod": "a", "instance": "a:8080"}
    labels |= {"kind": "slack", "why": "error", "status": "403"}
    checked = 0
    for name, rule in _alerts().items():
        text = " ".join(rule["annotations"]["description"].split())
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        for command in re.findall(r"`(kubectl [^`]*)`", text):
            words = command.split()[1:]
            flags: dict[str, str] = {}
            positional: list[str] = []
            while words:
                word = words.pop(0)
                if word in _KUBECTL_VALUED:
                    flags[word] = words.pop(0) if words else ""
                elif not word.startswith("-"):
                    positional.append(word)
            if positional[0] not in ("logs", "describe"):
                continue
            checked += 1
            assert flags.get("-n") or flags.get("--namespace"), f"{name}: `{command}`: no -n"
            target = positional[1:] or [flags.get("-l") or flags.get("--selector") or ""]
            assert all(target) and not any("<" in t for t in target), (
                f"{name}: `{command}` names nothing to read"
            )
    assert checked


# -- 4. two installs' notification failures summed: no install named, one hidden ----------------


def test_notification_failures_page_by_install(tmp_path: Path) -> None:
    """Each install of the controller has receivers of its own
    (--notify-url, --slack-webhook). CanaryNotificationsFailing summed the
    failures of all installs by receiver kind and why: it named no install,
    so not whose log names the receiver; and one install's Slack receiver
    failing while the other's already had raised nothing new. By the
    controller's namespace."""
    _promtool_case(tmp_path, "notifications not delivered, in one install and then the other")
