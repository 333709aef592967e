"""decide() under random sequences of what people and the cluster do:
releases and reverts, check results handed in late (as the shell does),
time passing, pods readiness (a stall: no new pod comes up), actions (some
pinned to a revision), gate answers, edits of the Service's annotations
(each to another valid value, several at once, made unreadable and fixed,
canary.io/strategy removed and put back) and hand edits of the twins and
the selector. A review's fuzzer of this shape found a stuck Service (an
IndexError on edited steps), a superseded canary serving unanalysed behind
a pause, and deadline misfires; these invariants keep that class of bug
out:

- decide() never raises;
- once adopted, the selector never selects the source Deployment's pods
  (unless, reset by a sync, they are of the stable revision and all the
  Service has: ending.source_stands_in);
- the Service never selects pods of a revision that is neither the stable
  one nor the rollout's own canary (the superseded, the rolled back);
- a cycle never leaves the Service fewer ready endpoints than the stable
  twin gave it (up to the app's size);
- no revision is rolled back on its analysis unless a check of it failed;
  none is promoted without a person's `promote` or a pass of its last step,
  and BAD (all its checks fail) never without the `promote`;
- while the annotations cannot be read, no rollout starts or moves on;
- no rollout starts (a release, an undo, one replacing another) while the
  stable twin, as the cycle saw it, has no ready pod and no ready endpoint
  and the app has a size, unless it has had none for longer than the
  progress deadline (counted from what the cycles saw, not State.woken);
- a release rolled back or aborted stays out while the team's Deployment
  holds it (deleted and recreated at it too), until `retry` or `undo`, or
  until neither the status nor the history says so any more;
- no cycle asks a twin (ScaleTwin, ApplyTwin) or the team's Deployment
  (ScaleSource, the size claimed for a hand-back) for more pods than the
  app can have needed: the largest size the harness gave it (3 as made,
  scale_source, scale_twin, the team HPA's bounds, every size the model's
  HPA controller set) plus a canary's at the largest step weight read
  (twins.canary_replicas), which is also what an autoscaled stable twin
  takes on when it gets all the traffic (autoscaling.serving_size); the
  team's HPA gone mid-rollout, the app keeps that sum (Driver.hpa_gone).
  Never from the controller's own sizes: one grown from its last (a
  hand-back adding the canary's share at every cycle) fails in a few;
- when the operations stop, passing checks, open gates and `resume`/`retry`
  bring every rollout to an end (nothing is stuck).

A second test adds what the team and the cluster do to the rest: the
Deployment deleted and recreated (at the serving, the rolled-back or another
revision, or reinstalled while the controller is down), a second Service
selecting the app's pods, cycles cut right
after a write of each kind (an API error, the lease lost), pod restarts
(max-restarts: none rolls back without more restarts of the canary's pods
since its rollout began than it allows) and the pods cache out, under the
same invariants (the capacity one included for the cut cycle).

A third starts with the team's HPA followed onto the stable twin (min 2,
max 10) and adds what the HPA controller and the team do with it: the load
changing (the HPA controller sizing every twin with our copy, within the
copy's bounds, for its share of the load), the team's HPA edited, deleted
and recreated, made unfollowable (an External metric) and back, and
refused by the HPA controller (AmbiguousSelector) until it is created
afresh. Besides the invariants above:

- when a cycle moves all the traffic onto one workload (a rollback, an
  abort, a promotion's flip, a hand-back, a superseded canary taken out)
  while the team's HPA is followed, that one is asked for at least what
  served before (the load, as far as the ready endpoints carried it and
  an HPA measured it; mid-promotion, what served when it began), within
  the team HPA's maximum (and our copy's as last written, which the HPA
  controller holds the twin to): the stable twin's HPA had sized it for
  its share only. Not asserted: after a person scaled the autoscaled
  twin by hand, until its HPA has settled it again (decide cannot tell
  that write, nor the HPA's resizes of the split it skewed, from a
  settled size), and for a step of the same rollout (World's canary
  never counts as having served);
- while the team's HPA is followed, decide() never scales a twin that
  keeps our copy below its live size (the HPA owns it).

CI runs 300 examples of each; RANDOM_OPERATIONS_EXAMPLES=5000 (with
HYPOTHESIS_PROFILE=explore for new seeds) looks further."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import replace
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from analysis.gate_results import GateAnswer, GateResult
from analysis.spec import GateKind
from analysis.verdicts import Verdict
from canary import history
from canary.decide import decide
from canary.model import (
    ApplyAutoscaler,
    ApplyTwin,
    Autoscaler,
    Checked,
    ClaimSource,
    Color,
    DeleteAutoscaler,
    Emit,
    GateSource,
    Observed,
    Plan,
    Record,
    ResetAutoscaler,
    RestoreSource,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
    other,
)
from canary.placement import stages
from canary.schedule import analysis_due, gate_due
from canary.spec import PREFIX, SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError, parse
from canary.twins import canary_replicas
from tests.unit.world import World, result, source

BAD = "r5"  # a release every check of which fails
TIGHT = "metrics: [{name: success-rate, min: 99.9}]"
NO_RESTART = "max-restarts: 0"
GATES = "gates: [{name: approve, when: %s, url: 'http://127.0.0.1:1/x'}]"
# Valid values of each annotation edited, the first the one it starts with
# ("": not written at all).
ANNOTATIONS: dict[str, tuple[str, ...]] = {
    "steps": ("25,50", "10", "50", "10,25,50", "90", "5,75"),
    "strategy": ("canary", "blue-green"),
    "interval": ("10s", "30s", "1m"),
    "failure-limit": ("1", "0", "2"),
    "progress-deadline": ("10m", "30s"),
    "scale-down-delay": ("30s", "0s", "5m"),
    "paused": ("false", "true"),
    "analysis": ("", GATES % "pre-promotion", GATES % "pre-step", TIGHT, NO_RESTART),
    "preview-service": ("", "web-next", "web-preview"),
}
# A value each cannot be read with (a typo, a value out of range).
UNREADABLE: dict[str, str] = {
    "steps": "50,10",
    "strategy": "linear",
    "interval": "30x",
    "failure-limit": "-1",
    "progress-deadline": "soon",
    "scale-down-delay": "x",
    "paused": "maybe",
    "analysis": "metrics: [",
    "preview-service": "Web_Next",
}
NAMES = sorted(ANNOTATIONS)
RESHAPING = ("steps", "strategy", "paused")
VERDICTS = (Verdict.PASS, Verdict.FAIL, Verdict.NO_DATA, Verdict.ERROR)
# What starts a rollout or moves it on: none of it while the spec is invalid.
MOVES = {"RolloutStarted", "StepAdvanced", "PromotionStarted", "Promoted"}

OPERATION = st.one_of(
    st.tuples(st.just("check"), st.sampled_from(VERDICTS)),
    st.tuples(st.just("check"), st.just(Verdict.PASS)),
    st.tuples(st.just("advance"), st.sampled_from((1, 5, 30, 700))),
    st.tuples(st.just("release"), st.integers(2, 5)),
    st.tuples(st.just("revert")),
    st.tuples(st.just("action"), st.sampled_from(("promote", "abort", "retry", "pause", "resume"))),
    st.tuples(st.just("gate"), st.booleans()),
    st.tuples(st.just("annotate"), st.sampled_from(NAMES), st.integers(0, 5)),
    # Those a rollout reacts to at once (a step count, the strategy, a
    # pause), twice as often as the others.
    st.tuples(st.just("annotate"), st.sampled_from(RESHAPING), st.integers(0, 5)),
    st.tuples(
        st.just("annotate_both"), st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(0, 5)
    ),
    st.tuples(st.just("unreadable"), st.sampled_from(NAMES)),
    st.tuples(st.just("readable"), st.sampled_from(NAMES)),
    st.tuples(st.just("managed"), st.booleans()),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("stall"), st.booleans()),
    st.tuples(st.just("delete_twin"), st.sampled_from(("blue", "green"))),
    st.tuples(st.just("scale_twin"), st.sampled_from(("blue", "green")), st.integers(0, 4)),
    st.tuples(st.just("reset_selector")),
    st.tuples(st.just("pinned"), st.sampled_from(("promote", "abort")), st.booleans()),
    st.tuples(st.just("edit_twin"), st.sampled_from(("blue", "green"))),
    st.tuples(st.just("lose_history")),
    st.tuples(st.just("lose_status")),
    st.tuples(st.just("undo"), st.integers(1, 4)),
    st.tuples(st.just("old_export"), st.integers(0, 20)),
    st.tuples(st.just("scale_source"), st.integers(1, 5)),
)

# Each kind of write a cycle can be cut right after (see World.step).
CUTS = (
    ApplyTwin,
    ClaimSource,
    GateSource,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Record,
    Emit,
    RestoreSource,
)
# What the team and the cluster do besides: the Deployment deleted (a
# `replace --force`, a Helm reinstall) and recreated at a revision (index
# into Driver.recreated), a second plain Service on the app's pods, a cycle cut.
BESIDES = st.one_of(
    st.tuples(st.just("delete_source")),
    st.tuples(st.just("recreate_source"), st.integers(0, 5)),
    # A reinstall while the controller is down (Driver.besides).
    st.tuples(st.just("reinstall"), st.integers(0, 2)),
    st.tuples(st.just("sharing"), st.booleans()),
    st.tuples(st.just("drain"), st.booleans()),
    st.tuples(st.just("cut"), st.sampled_from(CUTS)),
    # What happens after a rollback is what these add: a release (or the
    # one in flight) that turns bad, until it is rolled back.
    st.tuples(st.just("turns_bad"), st.integers(2, 5)),
    # A pod of a twin restarts (a crash loop, a node reboot).
    st.tuples(st.just("crash"), st.sampled_from(("canary", "stable")), st.integers(1, 3)),
    st.tuples(st.just("pods_cache"), st.booleans()),  # the pods cache listed, or its watch failing
)
# Half of them besides the others (one_of would weigh each of its branches alike).
MORE = st.sampled_from((OPERATION, BESIDES)).flatmap(lambda operations: operations)
# The team's HPA as it starts, followed onto the stable twin.
TEAM_HPA = Autoscaler("web", min_replicas=2, max_replicas=10)
EXTERNAL = "metric 1 is of type External: it does not depend on which twin serves"
# What the HPA controller and the team do with the team's HPA.
AUTOSCALING = st.one_of(
    # The app's load changes (in pods' worth, 0 to 14: within and outside
    # the bounds), and the HPA controller acts on every copy at once.
    st.tuples(st.just("load"), st.integers(0, 14)),
    st.tuples(st.just("load"), st.integers(4, 14)),  # rising, more often than the rest
    st.tuples(st.just("load"), st.integers(4, 14)),
    # Handed back (and taken again), and rollouts for the load to rise under.
    st.tuples(st.just("managed"), st.booleans()),
    st.tuples(st.just("release"), st.integers(2, 5)),
    st.tuples(st.just("hpa_edit"), st.integers(1, 4), st.integers(1, 12)),  # min, max
    st.tuples(st.just("hpa_delete")),
    st.tuples(st.just("hpa_recreate")),
    st.tuples(st.just("hpa_refused"), st.booleans()),  # an External metric added or removed
    st.tuples(st.just("ambiguous")),  # the copy refused: AmbiguousSelector
    st.tuples(
        st.just("cut"), st.sampled_from((ApplyAutoscaler, DeleteAutoscaler, ResetAutoscaler))
    ),
)
# A third of each.
AUTOSCALED = st.sampled_from((OPERATION, BESIDES, AUTOSCALING)).flatmap(lambda ops: ops)
# Ending a rollout so that its revision stays out.
KEPT_OUT = ("rolled-back", "aborted")


@functools.cache
def _parsed(written: frozenset[tuple[str, str]]) -> RolloutSpec | SpecError | None:
    """Parsed once per set of annotations: the examples come back to a few."""
    try:
        return parse("web", {PREFIX + name: value for name, value in written})
    except SpecError as error:
        return error


class Driver:
    def __init__(self, hpa: Autoscaler | None = None) -> None:
        self.annotations = {name: values[0] for name, values in ANNOTATIONS.items() if values[0]}
        self.unreadable: dict[str, str] = {}  # annotations set to a value that cannot be read
        self.managed = True  # canary.io/strategy is there
        self.autoscaled = hpa is not None
        self.team_hpa = hpa or Autoscaler()  # the team's HPA as last written (kept when deleted)
        self.load = 3  # the app's load, in pods' worth (the app is adopted at 3)
        # The load as a copy last measured it (sized a twin for it): a load
        # no HPA could see (its twin with no ready pod, its copy refused) is
        # no more known to the controller than to the HPA.
        self.seen_load = 3
        self.synced = 3  # the size the HPA last gave the twin it scales
        # A twin our copy scales was scaled by hand since the HPA last sized
        # it: decide() cannot tell that write from the HPA's (both set its
        # replicas) and follows it; what it leaves is the person's doing.
        self.overridden = False
        # What served when the promotion in flight began (the canary grown
        # to full size beside the stable twin is more than served: the
        # promotion keeps what both served then, promote_to).
        self.promotion_served = 0
        # The bounds our copies were last written with (the HPA controller
        # keeps a twin within them, not within the team's newer ones).
        self.bounds = (self.team_hpa.min_replicas, self.team_hpa.max_replicas)
        # The largest size the app can have needed (check_ceiling), from
        # what this harness did, never from what the controller wrote: the
        # source's size as made (3), every size a person asked of the
        # Deployment or a twin, the team HPA's bounds as ever written and
        # every size the model's HPA controller set; each step weight (below
        # 100) of the annotations read so far; and how many times the team's
        # HPA went while a copy of ours scaled a twin (hpa_gone).
        self.most = max(3, self.team_hpa.min_replicas, self.team_hpa.max_replicas)
        self.weights: set[int] = set()
        self.gone = 0
        self.world = World(hpa=hpa or Autoscaler()).adopted(self.valid_spec)
        # The selector as the last cycle left it (check_load_taken).
        self.left_selector = dict(self.world.selector)
        self.actions = 0
        self.pending: tuple[tuple[Any, ...], Checked] | None = None
        self.selectors: list[dict[str, str]] = []  # every selector the Service had
        self.failed: set[str] = {BAD}  # revisions a failing check was handed in for
        self.promote_asked: set[str] = set()  # revisions a person asked to promote
        self.passed_last: set[str] = set()  # revisions whose last step a check passed
        # A revision rolled back (or aborted) that the team's Deployment has
        # held ever since (or that was deleted meanwhile), with no retry or
        # undo asked: it must not roll out again.
        self.kept_out = ""
        # (when, colour, revision, restarts) of each pod restart made.
        self.crashes: list[tuple[float, str, str, int]] = []
        # The stable twin, and when a cycle first saw it with no ready pod
        # while the app has a size (check_waits_for_stable), kept here from
        # what the cycles observed, not from the status (State.woken).
        self.down_since: tuple[Color, float] | None = None
        # The size a hand-back last grew the stable twin to (None: none
        # since the last cycle that was not a hand-back's, or was cut).
        self.handback_grew: int | None = None

    @property
    def spec(self) -> RolloutSpec | SpecError | None:
        written = {**self.annotations, **self.unreadable}
        if not self.managed:
            del written["strategy"]
        return _parsed(frozenset(written.items()))

    @property
    def valid_spec(self) -> RolloutSpec:
        spec = self.spec
        assert isinstance(spec, RolloutSpec), spec
        return spec

    def annotate(self, name: str, index: int) -> None:
        values = ANNOTATIONS[name]
        self.annotations[name] = values[index % len(values)]
        if not self.annotations[name]:
            del self.annotations[name]

    def cycle(
        self, analysis: Checked | None = None, advance: float = 0.0, cut_after: type | None = None
    ) -> None:
        world, spec = self.world, self.spec
        if self.autoscaled:
            # The source's pods come up as soon as asked for, as the twins'
            # do (World keeps its ready count as set): a hand-back ends.
            world.source = replace(world.source, ready=world.source.replicas)
        if world.source.exists and world.source.revision != self.kept_out:
            self.kept_out = ""  # the Deployment changed: tried again
        before, lost = world.state, bool(world.lost)
        seen = world.observed()
        selected = {c for c in world.twins if world._selects(c)}
        serving = seen.twin(before.stable).endpoints
        ended = ended_out(world.records)
        copies = {c: t.replicas for c, t in world.twins.items() if c in world.copies}
        # A release applied to the Deployment while its own pods serve (a
        # reinstall's hold, or the selector reset onto it): README, "Not
        # handled", the selector goes back onto a stable twin that may have
        # no ready pod. Known and left: keeping them serves the release's
        # unanalysed pods. Only the "never empty" check is waived for it.
        release_in_hold = (
            world._selects_source()
            and before.canary is None
            and bool(before.stable_revision)
            and world.source.revision != before.stable_revision
            and seen.source.ready > 0
        )
        # Someone else wrote the selector since the last cycle (a sync, an
        # old export, a reinstall): what the Service had under the one the
        # last cycle left, with the twins as they are now.
        undone = None
        if world.selector != self.left_selector:
            written, world.selector = world.selector, self.left_selector
            undone = world.observed().endpoints
            world.selector = written
        if isinstance(spec, RolloutSpec):
            self.weights.update(w for w in stages(spec) if 0 < w < 100)
        plan = world.step(spec, analysis, advance=advance, cut_after=cut_after)
        self.check_ceiling(plan)
        self.left_selector = dict(world.selector)
        if world.state.promoting and not before.promoting:
            self.promotion_served = min(self.seen_load, seen.endpoints)
        if world.copies and world.hpa.followed and not world.stale:
            self.bounds = (world.hpa.min_replicas, world.hpa.max_replicas)
        world.gate = None  # a gate's answer is handed to the one cycle after the call
        if world.released:
            # The hand-back done, the shell removes the status annotation.
            world.state, world.released, self.kept_out = State(), False, ""
        if world.selector not in self.selectors:
            self.selectors.append(dict(world.selector))
        self.check_invariants(seen, selected, plan)
        self.check_kept_out(ended)
        self.check_outcomes(plan, before)
        self.check_waits_for_stable(seen, plan)
        if isinstance(spec, SpecError) and not lost:
            self.check_standing_still(before, plan)
        if before.adopted and world.state.adopted:
            self.check_capacity(serving, 0 if release_in_hold else seen.endpoints, plan)
        if self.autoscaled:
            self.check_hpa_owns(seen, copies, plan)
            self.check_load_taken(before, seen, plan, undone)
            self.check_handback_grows_once(spec, before, seen, plan, cut=cut_after is not None)

    def settle(self) -> None:
        for _ in range(10):
            before = (self.world.state, dict(self.world.selector), dict(self.world.twins))
            self.cycle()
            if (self.world.state, self.world.selector, self.world.twins) == before:
                return

    def apply(self, op: tuple[Any, ...]) -> None:
        if self.autoscaled:
            self.hpa_sync()  # the HPA controller acts between what people do
        if not self.on_the_service(op) and not self.on_the_hpa(op):
            self.in_the_cluster(op)
        self.settle()
        self.check_serving()

    def on_the_service(self, op: tuple[Any, ...]) -> bool:
        """What people write on the Service (annotations, actions) and what
        its gates answer; False for anything else."""
        kind = op[0]
        if kind == "action":
            self.act(op[1])
        elif kind == "gate":
            self.answer_gate(op[1])
        elif kind == "annotate":
            self.annotate(op[1], op[2])
        elif kind == "annotate_both":  # one `kubectl annotate` of several
            self.annotate(op[1], op[3])
            self.annotate(op[2], op[3])
        elif kind == "unreadable":
            self.unreadable[op[1]] = UNREADABLE[op[1]]
        elif kind == "readable":
            self.unreadable.pop(op[1], None)
        elif kind == "managed":
            self.managed = op[1]
        else:
            return False
        return True

    def on_the_hpa(self, op: tuple[Any, ...]) -> bool:
        """What the team does to its HPA, and the load; False for anything else."""
        world, kind = self.world, op[0]
        if kind == "load":
            self.load = op[1]
            self.hpa_sync()
        elif kind == "hpa_edit":
            low, high = op[1], max(op[1], op[2])
            self.team_hpa = replace(self.team_hpa, min_replicas=low, max_replicas=high)
            self.most = max(self.most, high)
            if world.hpa.name:
                world.hpa = replace(world.hpa, min_replicas=low, max_replicas=high)
                world.stale = bool(world.copies)  # the copies differ from it now
        elif kind == "hpa_delete":
            self.hpa_gone()
            world.hpa, world.stale = Autoscaler(), False
            self.seen_load = 0  # the app's size is the team's from here: no load measured
        elif kind == "hpa_recreate":
            # (A new uid: the HPA controller's old registration is gone with it.)
            world.hpa, world.stale = replace(self.team_hpa, refused=""), bool(world.copies)
            self.seen_load = 0  # (until it measures the load)
        elif kind == "hpa_refused" and world.hpa.name:
            if op[1]:
                self.hpa_gone()
            world.hpa = replace(world.hpa, refused=EXTERNAL if op[1] else "")
            self.seen_load = 0
        elif kind == "ambiguous" and world.hpa.name:
            world.hpa = replace(world.hpa, stale=True)
        else:
            return kind in ("hpa_refused", "ambiguous")
        return True

    def hpa_gone(self) -> None:
        """The team's HPA deleted or made unfollowable while a copy of ours
        scales a twin: mid-rollout, the app stays at what both twins served
        (autoscaling._left_at), a fixed size from then on with a canary on
        top at each step. Counted once per such write of the team's, never
        from a cycle's own sizes (check_ceiling)."""
        if self.world.copies:
            self.gone += 1

    def with_a_canary(self, size: int) -> int:
        """`size` and a canary's beside it at the largest weight read."""
        return size + max((canary_replicas(size, w) for w in self.weights), default=0)

    def hpa_sync(self) -> None:
        """The HPA controller, one sync: each copy sizes its twin as Kubernetes'
        does, its ready pods times their load per pod (the Service spreads
        the load over all its endpoints; a twin it does not select has none)
        over the target (one pod's worth), within the copy's bounds; never a
        twin at 0 or with no ready pod (no metric), nor while it refuses the
        copy (AmbiguousSelector). Released, the team's own HPA sizes the
        source."""
        world = self.world
        seen = world.observed()
        if not world.hpa.stale:
            low, high = self.bounds
            for color in sorted(world.copies):
                twin, live = world.twins.get(color), seen.twins.get(color)
                if twin is None or live is None or twin.replicas == 0:
                    continue
                if live.ready == 0:
                    # Blind: what the other twin gives up meanwhile (a
                    # canary's weight edited down) is not made up for; the
                    # load is carried as far as the size it set and the
                    # others' pods go.
                    others = sum(t.replicas for c, t in world.twins.items() if c != color)
                    self.seen_load = min(self.seen_load, self.synced + others)
                    continue
                per_pod = self.load / seen.endpoints if live.endpoints else 0.0
                want = max(low, math.ceil(live.ready * per_pod - 1e-9))
                self.synced = min(want, high) if high else want
                self.most = max(self.most, self.synced)
                # A twin scaled by hand stays the person's doing until a sync
                # leaves it as it is (the HPA settled), not at its first
                # resize: their scale shifted the Service's split (blue 1 :
                # green 1 at a 25 % step, the canary's pod carrying half the
                # load), and that sync sized blue for its skewed share only
                # (2 for a load of 4), which decide cannot tell from a
                # settled size: a rollback then gave blue what both had (3),
                # one pod short of the load until the HPA's next sync
                # (found by an explore run; decide sees no HPA metric).
                if self.synced == twin.replicas:
                    self.overridden = False
                world.twins[color] = replace(twin, replicas=self.synced)
                self.seen_load = self.load
        hpa, source = world.hpa, world.source
        if not world.state.adopted and hpa.name and source.exists and source.replicas > 0:
            want = max(hpa.min_replicas, min(self.load, hpa.max_replicas or self.load))
            world.source = replace(source, replicas=want, ready=want)
            self.most = max(self.most, want)

    def in_the_cluster(self, op: tuple[Any, ...]) -> None:
        world, kind = self.world, op[0]
        if kind == "check":
            self.hand_in_check(op[1])
        elif kind == "advance":
            self.cycle(advance=op[1])
        elif kind == "release":
            world.source = released(world.source, f"r{op[1]}")
        elif kind == "revert" and world.state.stable_revision:  # (none once handed back)
            world.source = released(world.source, world.state.stable_revision)
        elif kind == "ready":
            world.ready = op[1]
        elif kind == "stall":
            world.stall(op[1])
        elif kind == "delete_twin":
            world.twins.pop(op[1], None)
        elif kind == "scale_twin" and op[1] in world.twins:
            self.overridden = self.overridden or op[1] in world.copies
            world.twins[op[1]] = replace(world.twins[op[1]], replicas=op[2])
            self.most = max(self.most, op[2])
        elif kind == "reset_selector":
            world.selector = {"app": "web"}  # a GitOps sync of the original Service
        elif kind == "edit_twin" and op[1] in world.twins:
            # `kubectl edit` of a twin's pod template: same revision annotation.
            world.twins[op[1]] = replace(world.twins[op[1]], edited_by="kubectl-edit")
        elif kind == "lose_history":
            world.records = []  # the ConfigMap deleted by someone cleaning up
        elif kind == "lose_status":
            world.state, world.lost = State(), "missing"  # an old export applied
            self.forgotten()
        elif kind == "scale_source":
            # `kubectl scale` by the team: pods that would be ready, once ungated.
            world.source = replace(world.source, replicas=op[1], ready=op[1])
            self.most = max(self.most, op[1])
        elif kind == "old_export" and self.selectors:
            # The Service as exported a while ago, applied again: the selector
            # of then, and a status another manager wrote (not trusted).
            world.selector = dict(self.selectors[op[1] % len(self.selectors)])
            world.state, world.lost = State(), "written by kubectl-client-side-apply"
            self.forgotten()
        elif kind == "undo":
            self.actions += 1
            world.action = f"undo {op[1]} {self.actions}"
            self.kept_out = ""
            # An undo to the serving revision mid-rollout promotes it at once
            # (manual._back_to_serving): the person's word, as a `promote`.
            self.promote_asked.add(world.observed().revisions.get(op[1], ""))
        elif kind == "pinned":
            self.actions += 1
            meant = world.state.canary_revision if op[2] else "r9"  # r9: one replaced since
            world.action = f"{op[1]} revision={meant} {self.actions}"
            if op[1] == "promote" and op[2]:
                self.promote_asked.add(meant)
        else:
            self.besides(op)

    def besides(self, op: tuple[Any, ...]) -> None:
        world, kind = self.world, op[0]
        if kind == "delete_source":
            world.source = Source()
        elif kind == "recreate_source":
            state = world.state
            last_out = max(ended_out(world.records), default=(0, ""))[1]
            revisions = ("r1", "r2", BAD, state.stable_revision, state.canary_revision, last_out)
            world.source = source(revisions[op[1]] or "r1")
        elif kind == "reinstall":
            # `helm uninstall && helm install` while the controller is down:
            # no cycle between the Deployment deleted, made again at the
            # serving revision (ungated, its pods ready) and the selector
            # written back as in Git. The delete_source, reset_selector and
            # recreate_source above each get a cycle after them, so the
            # reinstall's hold (ending.source_stands_in) was reached about
            # once in 3,000 examples. Meanwhile the stable twin was left (0),
            # scaled to 0 (1) or deleted with the release (2). The controller
            # saw the cluster as it was before it went down: apply() has the
            # HPA controller sync just before, and without a cycle after it
            # the hold sized the twin at a size the HPA had already changed
            # (1 where it had grown it to 3).
            self.settle()
            stable = world.state.stable
            world.source = source(world.state.stable_revision or "r1")
            world.selector = {"app": "web"}
            if stable is not None and stable in world.twins and op[1]:
                if op[1] == 1:
                    world.twins[stable] = replace(world.twins[stable], replicas=0)
                else:
                    del world.twins[stable]
        elif kind == "turns_bad":
            # The release in flight (else a new one) fails its checks from
            # now on, until it is rolled back (or cannot be checked).
            if world.state.canary is None:
                world.source = released(world.source, f"r{op[1]}")
                self.settle()
            for _ in range(8):
                if world.state.canary is None:
                    break
                self.hand_in_check(Verdict.FAIL)
        elif kind == "crash":
            # A pod of the canary twin (else the other) or the stable twin.
            stable = world.state.stable or "blue"
            color = stable if op[1] == "stable" else world.state.canary or other(stable)
            # Only a pod that runs: a twin at 0 has none (a restart "on" it
            # was kept by the model's scale-up from 0 and counted on pods
            # that never restarted; found by an explore run).
            if color in world.twins and world.twins[color].replicas > 0:
                world.crash(color, op[2])
                self.crashes.append((world.now, color, world.twins[color].revision, op[2]))
        elif kind == "pods_cache":
            world.pods_known = op[1]
        elif kind == "sharing":
            world.sharing = ("web-2",) if op[1] else ()
        elif kind == "drain" and world.state.stable is not None:
            # The stable twin's pods evicted, Pending (no node fits), or back.
            world.pending = {world.state.stable} if op[1] else set()
        elif kind == "cut":
            # Only a cycle that makes a write of that kind (decide is pure:
            # the cycle decides the same).
            seen = decide(self.spec, world.state, world.observed(), None, world.now)
            if any(isinstance(a, op[1]) for a in seen.actions):
                self.cycle(cut_after=op[1])

    def forgotten(self) -> None:
        """The status lost: a rolled-back release stays out only as long as
        the history says it was."""
        if history.outcomes(self.world.records).get(self.kept_out) not in KEPT_OUT:
            self.kept_out = ""

    def act(self, action: str) -> None:
        self.actions += 1
        self.world.action = f"{action} {self.actions}"
        if action == "retry":
            self.kept_out = ""
        if action == "promote":
            self.promote_asked.add(self.world.state.canary_revision)

    def answer_gate(self, open_: bool) -> None:
        """As the shell: the gates awaited are asked when due, and their
        answer handed to the next cycle."""
        spec, world = self.spec, self.world
        kind = gate_due(spec, world.state, world.now) if isinstance(spec, RolloutSpec) else None
        if spec is None or isinstance(spec, SpecError) or kind is None:
            return
        world.gate = gate_answer(spec, kind, open_)
        self.cycle()

    def hand_in_check(self, verdict: Verdict) -> None:
        """As the shell: a check starts when due and its result is handed to a
        later cycle, only if the rollout is still where it was."""
        world, state = self.world, self.world.state
        if self.pending is not None and self.pending[0] == where(state):
            checked, self.pending = self.pending[1], None
            self.hand_in(checked)
            return
        self.pending = None
        spec = self.spec
        if not isinstance(spec, RolloutSpec):  # no check starts without a readable spec
            self.cycle(advance=10)
            return
        due = analysis_due(spec, state, world.now + 10, world.scrape, world.phase)
        if due is not None:
            self.cycle(advance=10)
            if where(world.state) == where(state):
                if state.canary_revision == BAD:
                    verdict = Verdict.FAIL
                checked = Checked(
                    due.kind, result(verdict), world.now, spec.analysis, spec.interval
                )
                self.pending = (where(state), checked)

    def hand_in(self, checked: Checked) -> None:
        """A finished check to the next cycle, noting what it may decide."""
        state, spec = self.world.state, self.spec
        if checked.result.verdict is Verdict.FAIL:
            self.failed.add(state.canary_revision)
        if isinstance(spec, RolloutSpec) and passes_last_step(spec, state, checked):
            self.passed_last.add(state.canary_revision)
        self.cycle(checked)

    def check_invariants(self, before: Observed, selected: set[Color], plan: Plan) -> None:
        world, state = self.world, self.world.state
        if not state.adopted:
            return
        selector = world.selector
        if self.managed:  # (handed back, the source's pods are to serve)
            # The one exception (ending.source_stands_in): a selector reset
            # onto the source's own pods of the stable revision, while the
            # stable twin has fewer ready pods than it and no canary is in
            # flight, waits for them rather than leave the Service fewer.
            def short(seen: Observed) -> bool:
                assert state.stable is not None
                return seen.source.ready > 0 and seen.twin(state.stable).ready < seen.source.ready

            # A World artefact, as for stable_down below: the stable twin the
            # hold scaled up (or made again) this very cycle has its pods
            # ready at once; decide saw it short and held, and the cycle
            # after moves the selector, which this check then holds it to.
            grown = any(
                isinstance(a, ApplyTwin | ScaleTwin) and a.color == state.stable
                for a in plan.actions
            )
            stands_in = (
                world._selects_source()
                and state.stable is not None
                # (A canary in flight with no endpoint serves nothing.)
                and not world.observed().twin(other(state.stable)).endpoints
                and world.source.revision == state.stable_revision
                and (short(world.observed()) or (grown and short(before)))
            )
            assert TWIN_LABEL in selector or SERVICE_LABEL in selector or stands_in, selector
        allowed = {state.stable_revision, state.canary_revision} - {""}
        stable_down = state.stable is not None and world.observed().twin(state.stable).ready == 0
        if state.stable is not None and before.twin(state.stable).ready == 0:
            # A World artefact: pods are ready the instant they are asked
            # for, so a stable twin this very cycle recreated or scaled up
            # from no ready pod looks up already; decide saw it down (a real
            # one's pods take a while) and takes the held-back twin out the
            # cycle after, which this check then holds it to.
            stable_down = stable_down or any(
                isinstance(a, ApplyTwin | ScaleTwin) and a.color == state.stable
                for a in plan.actions
            )
        for color, twin in world.twins.items():
            if twin.replicas and world._selects(color) and twin.revision not in allowed:
                # The one exception (decide._held_back): a twin whose pods
                # served keeps serving, as it was, until the stable twin has
                # a ready pod, rather than leave the Service no endpoint
                # (whether its own pods are ready then or not: pods that
                # cannot get ready anywhere leave nothing to choose).
                was = before.twins.get(color)
                kept = (
                    was is not None
                    and was.revision == twin.revision
                    and (was.endpoints > 0 or (color in selected and was.ready == 0))
                )
                assert stable_down and kept, (color, twin.revision, state)

    def check_kept_out(self, ended: set[tuple[Any, str]]) -> None:
        """A release rolled back or aborted is not rolled out again while
        the Deployment holds it (README: until it changes or `canary retry`)."""
        world = self.world
        for _, revision in ended_out(world.records) - ended:
            if not world.source.exists or world.source.revision == revision:
                self.kept_out = revision
        if self.kept_out:
            assert world.state.canary_revision != self.kept_out, (self.kept_out, world.state)

    def check_waits_for_stable(self, seen: Observed, plan: Plan) -> None:
        """No rollout starts (a release, an undo: RolloutStarted) while
        the stable twin, as the cycle saw it, has no ready pod and no ready
        endpoint and the app has a size, unless it has had none for longer
        than the progress deadline: a canary pod ready before it would take
        every request, judged with no baseline (README, "the stable twin is
        there at its size but has no ready pod"). How long is counted here,
        from what each cycle observed. No exception for a status lost
        (lose_status, old_export): it loses State.woken, and the product can
        then count only from the first cycle after, later than here, which
        holds a release longer, never shorter. Nor for a cycle cut before
        its status landed: the settling cycles after it see what it saw."""
        state, now = plan.state, self.world.now
        stable = state.stable
        if stable is None or state.replicas == 0:
            self.down_since = None  # (nothing to wait for: no app, or none of a size)
        elif not has_a_ready_pod(seen.twin(stable)):
            if self.down_since is None or self.down_since[0] != stable:
                self.down_since = (stable, now)
        else:
            self.down_since = None
        started = any(isinstance(a, Emit) and a.reason == "RolloutStarted" for a in plan.actions)
        if not started or self.down_since is None:
            return
        spec = self.spec
        assert isinstance(spec, RolloutSpec), (spec, plan.actions)  # (check_standing_still)
        waited = now - self.down_since[1]
        assert waited > spec.progress_deadline, (waited, self.down_since, seen.twins, plan.actions)

    def check_outcomes(self, plan: Plan, before: State) -> None:
        """Rolled back on its analysis only with a failing check of its own
        (a deadline is the pods' doing), over restarts only with more of its
        pods' restarts since its rollout began than max-restarts; promoted
        only as asked or passed."""
        for record in (a for a in plan.actions if isinstance(a, Record)):
            revision, analysed = record.revision, not record.reason.startswith("Progress")
            if record.reason.startswith("PodRestarts"):
                since = sum(
                    n
                    for when, color, crashed, n in self.crashes
                    if (color, crashed) == (before.canary, revision)
                    and when >= before.rollout_started
                )
                spec = self.spec
                limit = spec.analysis.max_restarts if isinstance(spec, RolloutSpec) else 0
                assert since > limit, (record, since, self.crashes, before)
                continue
            if record.outcome == "rolled-back" and analysed:
                assert revision in self.failed, (record, self.world.state)
            if record.outcome == "promoted" and revision not in self.promote_asked:
                assert revision != BAD and revision in self.passed_last, (record, plan.state)

    def check_standing_still(self, before: State, plan: Plan) -> None:
        """Invalid annotations: traffic and rollouts stay as they are (an
        abort may still take a canary out)."""
        state = self.world.state
        moved = MOVES & {a.reason for a in plan.actions if isinstance(a, Emit)}
        assert not moved, (moved, before, state)
        assert state.canary_revision in (before.canary_revision, ""), (before, state)
        if state.canary_revision:
            assert (state.step, state.promoting) == (before.step, before.promoting), state

    def check_capacity(self, serving: int, endpoints: int, plan: Plan) -> None:
        """No decision leaves the Service fewer ready endpoints than the
        stable twin gave it (up to the app's size): a flip, a rollback or a
        re-scale waits for pods that are ready. (A canary's pods are extra:
        taken out of traffic, they are no loss; unless they are all the
        Service has, the stable twin having no ready pod: decide._held_back.
        Checked once no canary is in flight: World's twins have no
        ReplicaSet, so its canary never counts as having served
        (state.canary_pods) and a later step takes it out until it is whole.)"""
        world = self.world
        now = world.observed().endpoints
        assert now >= min(serving, world.state.replicas), (serving, now, plan.actions)
        if world.state.canary is None:
            assert now > 0 or endpoints == 0, (endpoints, plan.actions)

    def check_hpa_owns(self, seen: Observed, copies: dict[Color, int], plan: Plan) -> None:
        """A twin our copy scales (before the cycle and after it) is never
        scaled down by decide() while the team's HPA is followed: the HPA
        owns its size. (A copy left when the team's HPA went, while it
        cannot be removed, is no promise: the team's own scale of its
        Deployment, re-applied without the HPA, is theirs to make.)"""
        if not seen.autoscaler.followed:
            return
        for action in plan.actions:
            if isinstance(action, ScaleTwin) and action.color in copies.keys() & self.world.copies:
                assert action.replicas >= copies[action.color], (action, copies, plan.state)

    def check_handback_grows_once(
        self,
        spec: RolloutSpec | SpecError | None,
        before: State,
        seen: Observed,
        plan: Plan,
        cut: bool,
    ) -> None:
        """A hand-back grows the stable twin (to what both twins served)
        once: never again from a size it asked for itself, the twin still
        at it (found by an explore run, seed 6: each waiting cycle took that
        growth for the HPA's share and added the canary's on top, 13 to
        3051 pods). A cycle cut may lose the status that keeps the size
        (State.handback_served): the next one is not held to it."""
        stable = before.stable
        if spec is not None or stable is None or cut:
            self.handback_grew = None
            return
        live = seen.twin(stable).replicas
        grown = [
            a.replicas
            for a in plan.actions
            if isinstance(a, ScaleTwin) and a.color == stable and a.replicas > live
        ]
        if self.handback_grew is not None and live == self.handback_grew:
            assert not grown, (live, grown, before, plan.actions)
        if grown:
            self.handback_grew = grown[-1]

    def check_ceiling(self, plan: Plan) -> None:
        """No cycle asks a twin or the team's Deployment (a scale, a twin
        applied, the size claimed for a hand-back) for more pods than the
        app can have needed: the largest size this harness knows it had
        (self.most) plus a canary's at the largest step weight read
        (twins.canary_replicas). That sum is the most a step ever has, and
        what an autoscaled rollout's stable twin takes on at a rollback, a
        promotion or a hand-back (autoscaling.serving_size: its live size
        plus the canary's share). Bounded by what the harness did, not by
        the status: a size grown from the controller's own last one (a
        hand-back growing the stable twin by the canary's share at every
        cycle, 13 -> 17 -> ... -> 3051) fails within a few cycles. Each
        time the team's HPA went mid-rollout, the app may have kept such a
        sum (hpa_gone), counted at the weights read since too: the copy
        goes only once the annotations can be read."""
        most = self.most
        for _ in range(self.gone):
            most = self.with_a_canary(most)
        ceiling = self.with_a_canary(most)
        for action in plan.actions:
            if isinstance(action, ScaleTwin | ApplyTwin | ScaleSource):
                asked = action.replicas
            elif isinstance(action, ClaimSource):
                asked = action.claim.replicas
            else:
                continue
            assert asked <= ceiling, (
                f"asked for more pods than the app can have needed: {action} > {ceiling} "
                f"(largest size {self.most}, weights {sorted(self.weights)}, HPA gone "
                f"{self.gone} times)",
                plan.actions,
            )

    def check_load_taken(
        self, before: State, seen: Observed, plan: Plan, undone: int | None
    ) -> None:
        """All the traffic moved onto one workload (a twin, or the source at
        a hand-back) in this cycle: it is asked for at least what served
        before, the load as far as the ready endpoints carried it (and as
        far as an HPA could measure it; mid-promotion, as far as both twins
        carried it when the promotion began), within the team HPA's maximum
        and the maximum of the copy that scales the twin.
        (Pods just asked for are not ready at once in a real cluster: what
        is checked is the size asked, not the endpoints.)"""
        world, auto = self.world, seen.autoscaler
        if not (before.adopted and auto.followed and before.stable in auto.copies):
            return
        if self.overridden:
            return
        going_on = (
            before.canary is not None and world.state.canary_revision == before.canary_revision
        )
        if going_on and self.spec is not None:
            # The same rollout goes on (not handed back): a step that takes
            # its canary out until it is whole is a World artefact (its twins
            # have no ReplicaSet, so the canary never counts as having
            # served; see check_capacity).
            return
        after = [c for c in world.twins if world._selects(c)]
        to_source = world._selects_source()
        if len(after) + to_source != 1:
            return
        target = None if to_source else after[0]  # (None: the source)
        own = seen.source.ready if target is None else seen.twin(target).endpoints
        if seen.endpoints - own == 0:
            return  # nothing else served: no traffic moved
        served = min(self.seen_load, seen.endpoints)
        if before.promoting:
            served = min(served, self.promotion_served)
        if undone is not None:
            # A selector someone else wrote since the last cycle, put back:
            # what it swept in for that moment (a twin left by a lost
            # status) did not serve before it. The Service is asked to
            # keep what it had; a shortfall from their write (blue left
            # alone at 2 pods for a load of 4, its HPA copy refused) is
            # theirs, not this cycle's (found by an explore run).
            served = min(served, max(undone, own))
        maximum = seen.autoscaler.max_replicas
        # And within our copy's maximum as last written (self.bounds): the
        # HPA controller holds the twin to the copy's bounds, not the team
        # HPA's newer ones. A copy left unchanged while the annotations
        # cannot be read (decide._invalid does not rewrite it) still holds
        # the twin at the old maximum when the team raised theirs, and a
        # twin scaled above it is cut back at the HPA's next sync. (A lower
        # team maximum is still the one asked for: serving_size keeps to it.)
        # Reading the team's newest maximum here asked the twin for 2 pods
        # its copy kept at 1 (found by an explore run).
        if self.bounds[1]:
            maximum = min(maximum, self.bounds[1]) if maximum else self.bounds[1]
        needed = min(served, maximum) if maximum else served
        asked = world.source.replicas if target is None else world.twins[target].replicas
        assert asked >= needed, (target, asked, needed, self.load, seen.twins, plan.actions)

    def check_serving(self) -> None:
        """Once settled, with pods that can get ready, the Service serves:
        whatever was deleted or scaled by hand is back (unless nothing keeps
        the stable revision's template any more, which the status says)."""
        world = self.world
        if not world.state.adopted or not world.ready or world.pending or world.stalled is not None:
            return
        if isinstance(self.spec, SpecError) or "cannot be" in world.state.degraded:
            return
        observed = world.observed()
        assert observed.endpoints > 0, (world.selector, world.twins, world.state)

    def finish(self) -> None:
        """Everything stops: passing checks (failing for BAD), open gates,
        no pause, readable annotations, nothing broken by hand."""
        world = self.world
        if not world.source.exists:
            world.source = source(world.state.stable_revision or "r1")
        world.sharing, world.pending, world.pods_known = (), set(), True
        self.annotations["paused"] = "false"
        self.unreadable.clear()
        self.managed = True
        world.ready = True
        world.stall(False)
        self.act("resume")
        for _ in range(60):
            self.settle()
            state = world.state
            if state.adopted and state.canary is None and not state.halted:
                return
            if state.halted:
                self.act("retry")
            self.cycle(advance=5)
            spec, state = self.valid_spec, world.state
            due = analysis_due(spec, state, world.now, world.scrape, world.phase)
            if due is not None:
                verdict = Verdict.FAIL if state.canary_revision == BAD else Verdict.PASS
                self.hand_in(Checked(due.kind, result(verdict), world.now))
            self.answer_gate(True)
        raise AssertionError(f"stuck: {world.state}")


def has_a_ready_pod(twin: Twin) -> bool:
    """As observed: a ready pod (of either template while it rolls), or a
    ready endpoint; none while the twin is missing or being deleted."""
    return twin.exists and max(twin.ready, twin.ready_mixed, twin.endpoints) > 0


def released(source: Source, revision: str) -> Source:
    """The team's Deployment at `revision`, with that revision's template."""
    return replace(
        source, revision=revision, template={"metadata": {"annotations": {"rev": revision}}}
    )


def ended_out(records: list[dict[str, Any]]) -> set[tuple[Any, str]]:
    """The history's entries (number, revision) ended rolled back or aborted."""
    return {
        (r.get("number"), str(r.get("revision")))
        for r in records
        if r.get("outcome") in KEPT_OUT and r.get("ended")
    }


def where(state: State) -> tuple[Any, ...]:
    return (state.canary_revision, state.rollout_started, state.step, state.gate_wait)


def gate_answer(spec: RolloutSpec, kind: GateKind, open_: bool) -> GateResult:
    """Every gate of `kind` answering alike."""
    asked = spec.analysis.gates_on(kind)
    answers = tuple(GateAnswer(g.name, str(kind), open_, 200, "", 1, 1.0) for g in asked)
    return GateResult(str(kind), answers, asked)


def passes_last_step(spec: RolloutSpec, state: State, checked: Checked) -> bool:
    """A scheduled pass of the last step, under the analysis it ran under."""
    return (
        checked.kind == "scheduled"
        and checked.result.verdict is Verdict.PASS
        and state.canary is not None
        and bool(state.step_ready)
        and state.step == len(stages(spec)) - 1
        and checked.analysis in (None, spec.analysis)
    )


def _drive(operations: list[tuple[Any, ...]], hpa: Autoscaler | None = None) -> None:
    driver = Driver(hpa)
    for op in operations:
        driver.apply(op)
    driver.finish()


@settings(max_examples=int(os.environ.get("RANDOM_OPERATIONS_EXAMPLES", "300")), deadline=None)
@given(st.lists(OPERATION, max_size=30))
def test_random_operations_never_crash_serve_the_wrong_pods_or_get_stuck(
    operations: list[tuple[Any, ...]],
) -> None:
    _drive(operations)


@settings(max_examples=int(os.environ.get("RANDOM_OPERATIONS_EXAMPLES", "300")), deadline=None)
@given(st.lists(MORE, max_size=30))
# A reinstall with the stable twin at 0: the hold scales it up (check_invariants).
@example([("reinstall", 1)])
# And one during a rollout paused before its canary has a pod, the stable
# twin drained: held too (ending.source_stands_in), not emptied.
@example([("action", "pause"), ("drain", True), ("release", 2), ("reinstall", 0)])
# And a crash "on" the canary twin at 0 (no pod to restart), then an undo
# that scales it up (Driver.besides: only a running pod restarts).
@example(
    [
        ("release", 2),
        ("recreate_source", 0),
        ("pods_cache", False),
        ("crash", "canary", 2),
        ("advance", 1),
        ("undo", 2),
    ]
)
def test_random_operations_with_the_deployment_recreated_and_cycles_cut(
    operations: list[tuple[Any, ...]],
) -> None:
    _drive(operations)


@settings(max_examples=int(os.environ.get("RANDOM_OPERATIONS_EXAMPLES", "300")), deadline=None)
@given(st.lists(AUTOSCALED, max_size=30), st.none() | st.integers(4, 12))
# Found by an explore run: the stable twin recreated (by the cycle) while a
# superseded one is held serving for want of it (check_invariants).
@example(
    [
        ("recreate_source", 1),
        ("drain", True),
        ("delete_source",),
        ("managed", False),
        ("delete_twin", "blue"),
    ],
    None,
)
# And: a reinstall while the stable twin is drained leaves the source's own
# pods (the stable revision) all the Service has (ending.source_stands_in).
@example(
    [
        ("delete_source",),
        ("drain", True),
        ("managed", False),
        ("reset_selector",),
        ("recreate_source", 0),
        ("managed", True),
    ],
    None,
)
# And: a reinstall right after the HPA controller resized the stable twin.
@example([("hpa_delete",), ("scale_source", 1), ("hpa_recreate",), ("reinstall", 1)], None)
# And: a selector reset sweeping in a twin a lost status left, put back
# (check_load_taken: the load it carried for that moment is not the baseline).
@example(
    [
        ("check", Verdict.PASS),
        ("check", Verdict.PASS),
        ("unreadable", "analysis"),
        ("ambiguous",),
        ("old_export", 0),
        ("reset_selector",),
    ],
    4,
)
# And: the team's HPA maximum raised while the annotations cannot be read
# (our copy keeps the old one, and the twin with it) before a reinstall's
# hold ends (check_load_taken: the copy's maximum bounds what is needed).
@example(
    [("hpa_edit", 1, 1), ("unreadable", "analysis"), ("hpa_edit", 1, 2), ("reinstall", 1)], None
)
# And: the stable twin scaled by hand mid-step, resized once by its HPA,
# then a reinstall at the stable revision ends the rollout (hpa_sync: the
# person's scale lasts until the HPA settles).
@example([("scale_twin", "blue", 1), ("reinstall", 1)], 4)
# And: a hand-back mid-step while a drain leaves the stable twin's pods
# Pending, the team's HPA deleted (no maximum): each waiting cycle grew the
# stable twin from its own growth (check_handback_grows_once), 13 to 3051
# pods; then the Deployment, recreated meanwhile, had its size taken under
# the copy's removal (check_capacity: autoscaling._left_at).
@example(
    [
        ("drain", True),
        ("managed", False),
        ("reset_selector",),
        ("hpa_delete",),
        ("recreate_source", 1),
    ],
    6,
)
def test_random_operations_with_a_followed_team_hpa(
    operations: list[tuple[Any, ...]], load: int | None
) -> None:
    # Half of them start with a release under a load the HPA has grown the
    # app for: what the load moves (a rollback, an abort, a flip, a
    # hand-back) is what most needs the capacity.
    started = [("load", load), ("release", 2)] if load is not None else []
    _drive(started + operations, TEAM_HPA)
