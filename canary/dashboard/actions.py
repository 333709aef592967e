"""Actions from the page: promote, abort, retry, pause, resume, undo N.

Each goes through a confirmation that says what will happen to traffic, then
writes the same canary.io/action annotation as the CLI, with the user's own
credentials and a field manager naming the user (`canary-dashboard-<user>`),
so the controller's Events say who asked. A POST without the page's
anti-forgery token is refused: a page on another site can make the browser
send a form here, but cannot read the token out of our pages.
"""

from __future__ import annotations

import getpass
import hmac
import re
import secrets
from dataclasses import dataclass, replace

from canary import oncall
from canary.dashboard.read import JSON, History, read_status, strings
from canary.dashboard.views import phase_of, steps_of
from canary.kube import Kube, KubeError
from canary.spec import STRATEGY

VERBS = ("promote", "abort", "retry", "pause", "resume", "undo")
LABELS = {
    "promote": "Promote",
    "abort": "Abort",
    "retry": "Retry",
    "pause": "Pause",
    "resume": "Resume",
    "undo": "Undo to this revision",
}


@dataclass(frozen=True, slots=True)
class Offer:
    verb: str
    label: str
    consequence: str  # what happens to traffic, in a sentence or two
    applies: bool  # False: the controller would ignore it right now (said in consequence)
    to: int | None = None
    revision: str = ""  # the revision it is for: never carried out on another
    step: int | None = None  # a retry of this step in flight (never of the revision rolled back)


class Token:
    """The anti-forgery token: one random value per dashboard process, in
    every page's forms; compared in constant time."""

    def __init__(self, value: str | None = None) -> None:
        self.value = value or secrets.token_urlsafe(32)

    def accepts(self, given: str | None) -> bool:
        # As bytes: compare_digest refuses a str that is not ASCII (a 500).
        return bool(given) and hmac.compare_digest(str(given).encode(), self.value.encode())

    def sign(self, text: str) -> str:
        """A mark that this dashboard wrote `text` (the action it asked for,
        shown after the redirect): a link made elsewhere cannot show one."""
        return hmac.new(self.value.encode(), text.encode(), "sha256").hexdigest()[:32]

    def signed(self, text: str, mark: str | None) -> bool:
        return bool(mark) and hmac.compare_digest(self.sign(text).encode(), str(mark).encode())


def manager_for(user: str) -> str:
    """A field manager naming the user: printable, at most 128 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9@._:-]+", "-", user).strip("-") or "unknown"
    return f"canary-dashboard-{cleaned}"[:128]


async def whoami(kube: Kube) -> str:
    """The user the API server knows these credentials as (SelfSubjectReview);
    the local login name when the server will not say."""
    try:
        review = await kube.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except KubeError:
        return getpass.getuser()
    name = ((review.get("status") or {}).get("userInfo") or {}).get("username")
    return str(name) if name else getpass.getuser()


async def request(
    kube: Kube,
    namespace: str,
    name: str,
    verb: str,
    to: int | None,
    user: str,
    revision: str | None = None,
    step: int | None = None,
) -> str:
    """Write canary.io/action as the CLI does; returns the value written.
    `step`: the step in flight a retry was confirmed for (Offer.step)."""
    return await oncall.request(
        kube, namespace, name, verb, to, manager=manager_for(user), revision=revision, step=step
    )


def _pct(value: float | None) -> str:
    return "an unknown share" if value is None else f"{value:g}%"


def _revision(history: History, number: int) -> str:
    record = history.numbered(number)
    return str((record or {}).get("revision") or "")


def _images(history: History, number: int) -> str:
    record = history.numbered(number)
    images = strings(record, "images") if record else []
    return ", ".join(images) or "images not recorded"


def offer(verb: str, service: JSON, history: History, to: int | None = None) -> Offer:
    """What `verb` would do to this Service's traffic right now, and to which
    revision: the confirmation carries it, so a release that replaced that
    one before the click is not what gets promoted or aborted."""
    revision = oncall.pin(verb, service, None)
    return replace(
        _offer(verb, service, history, to),
        revision=revision,
        step=oncall.step_of(service, verb, revision),
    )


def _offer(verb: str, service: JSON, history: History, to: int | None = None) -> Offer:
    s = read_status(service)
    phase = phase_of(s)
    canary, stable = s.text("canary"), s.text("stable") or "stable"
    canary_rev = s.text("canary_revision") or "?"
    stable_rev = s.text("stable_revision") or "?"
    effective = s.number("effective_weight")
    strategy = (service.get("metadata", {}).get("annotations") or {}).get(STRATEGY, "")
    steps = steps_of(service) or ()
    first = (
        "the preview only (0%)" if strategy == "blue-green" else _pct(steps[0] if steps else None)
    )
    label = LABELS.get(verb, verb)
    match verb:
        case "promote" if canary:
            text = (
                f"The remaining steps are skipped. Once every pod of the {canary} twin "
                f"({canary_rev}) is a ready endpoint, the Service sends all traffic to it "
                f"(it has {_pct(effective)} now). The {stable} twin ({stable_rev}) stays up "
                "for the scale-down delay, so an abort right after is instant."
            )
            return Offer(verb, label, text, True)
        case "abort" if canary:
            text = (
                f"All traffic goes back to the stable {stable} twin ({stable_rev}) at once "
                f"(the canary has {_pct(effective)} now) and the {canary} twin scales to 0. "
                f"Revision {canary_rev} is not tried again until the Deployment changes or "
                "someone retries it."
            )
            return Offer(verb, label, text, True)
        case "abort" if s.text("scale_down"):
            text = (
                f"The promotion of {stable_rev} is undone: traffic flips back to the "
                f"{s.text('scale_down')} twin ({s.text('previous_revision') or '?'}), still up "
                f"since the promotion, and the {stable} twin scales to 0."
            )
            return Offer(verb, label, text, True)
        case "retry" if canary:
            text = (
                f"Step {int(s.number('step') or 0) + 1} of {canary_rev} is analysed again "
                f"from a fresh window; traffic stays as it is ({_pct(effective)} to the canary)."
            )
            return Offer(verb, label, text, True)
        case "retry" if s.text("failed_revision"):
            text = (
                f"Revision {s.text('failed_revision')} is rolled out again from the first step: "
                f"the canary gets {first} of traffic, then each step as analysis passes."
            )
            return Offer(verb, label, text, True)
        case "pause" if canary:
            text = (
                f"Traffic stays where it is ({_pct(effective)} to the {canary} twin) and the "
                "rollout does not move on until someone resumes it. Analysis results are "
                "still recorded."
            )
            return Offer(verb, label, text, phase != "Paused")
        case "pause":
            text = (
                "Nothing is rolling out; traffic does not change. The next rollout holds at its "
                "first step until someone resumes it."
            )
            return Offer(verb, label, text, True)
        case "resume":
            text = (
                "The rollout continues from the step it is at; traffic moves on as analysis passes."
                if canary
                else "Nothing is rolling out; the next rollout will not hold."
            )
            return Offer(verb, label, text, phase == "Paused" or bool(s.flag("paused")))
        case "undo" if to is not None and canary and _revision(history, to) == stable_rev:
            # No canary of what serves (manual._back_to_serving): the
            # release the Deployment asks for is what stays out.
            kept = s.text("undo_of") or canary_rev
            text = (
                f"Revision #{to} ({_images(history, to)}) already serves: the rollout in flight "
                f"({canary_rev}) is cancelled first, its traffic back on the {stable} twin at "
                f"once, and nothing rolls out; {kept} stays out until the Deployment changes "
                "or someone retries it."
            )
            return Offer(verb, label, text, True, to)
        case "undo" if to is not None:
            cancel = (
                f" The rollout in flight ({canary_rev}) is cancelled first: its traffic goes "
                f"back to the {stable} twin."
                if canary
                else ""
            )
            text = (
                f"Revision #{to} ({_images(history, to)}) is rolled out again as a new rollout "
                f"through the same strategy, starting with {first} of traffic.{cancel}"
            )
            return Offer(verb, label, text, history.numbered(to) is not None, to)
        case _:
            return Offer(
                verb,
                label,
                f"There is nothing to {verb} right now ({phase}); the controller would record "
                "that it ignored the request and change nothing.",
                False,
                to,
            )


def offers(service: JSON, history: History) -> list[Offer]:
    """The buttons worth showing for the Service's state."""
    shown = [offer(v, service, history) for v in ("promote", "abort", "retry", "pause", "resume")]
    return [o for o in shown if o.applies]
