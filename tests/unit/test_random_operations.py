"""decide() under random sequences of what people and the cluster do:
releases and reverts, check results handed in late (as the shell does),
time passing, pods readiness, actions (some pinned to a revision),
annotation edits (some unreadable for a while) and hand edits of the twins
and the selector. A review's fuzzer of this shape found a stuck
Service (an IndexError on edited steps), a superseded canary serving
unanalysed behind a pause, and deadline misfires; these invariants keep
that class of bug out:

- decide() never raises;
- once adopted, the selector never selects the source Deployment's pods;
- the Service never selects pods of a revision that is neither the stable
  one nor the rollout's own canary (the superseded, the rolled back);
- when the operations stop, passing checks and `resume`/`retry` bring every
  rollout to an end (nothing is stuck)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.verdicts import Verdict
from canary.model import Checked, Source, State
from canary.schedule import analysis_due
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError
from tests.unit.world import World, result, spec

STEPS = ("25,50", "10", "50", "10,25,50", "90")
INVALID = SpecError("canary.io/interval", "'30x' is not a duration")
VERDICTS = (Verdict.PASS, Verdict.FAIL, Verdict.NO_DATA, Verdict.ERROR)

OPERATION = st.one_of(
    st.tuples(st.just("check"), st.sampled_from(VERDICTS)),
    st.tuples(st.just("check"), st.just(Verdict.PASS)),
    st.tuples(st.just("advance"), st.sampled_from((1, 5, 30, 700))),
    st.tuples(st.just("release"), st.integers(2, 5)),
    st.tuples(st.just("revert")),
    st.tuples(st.just("action"), st.sampled_from(("promote", "abort", "retry", "pause", "resume"))),
    st.tuples(st.just("steps"), st.sampled_from(STEPS)),
    st.tuples(st.just("strategy"), st.sampled_from(("canary", "blue-green"))),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("delete_twin"), st.sampled_from(("blue", "green"))),
    st.tuples(st.just("scale_twin"), st.sampled_from(("blue", "green")), st.integers(0, 4)),
    st.tuples(st.just("reset_selector")),
    st.tuples(st.just("invalid"), st.booleans()),
    st.tuples(st.just("pinned"), st.sampled_from(("promote", "abort")), st.booleans()),
    st.tuples(st.just("edit_twin"), st.sampled_from(("blue", "green"))),
    st.tuples(st.just("lose_history")),
    st.tuples(st.just("lose_status")),
    st.tuples(st.just("undo"), st.integers(1, 4)),
    st.tuples(st.just("old_export"), st.integers(0, 20)),
    st.tuples(st.just("scale_source"), st.integers(1, 5)),
)


class Driver:
    def __init__(self) -> None:
        self.world = World().adopted(spec(steps="25,50"))
        self.knobs: dict[str, str] = {"steps": "25,50", "strategy": "canary", "paused": "false"}
        self.actions = 0
        self.pending: tuple[tuple[Any, ...], Checked] | None = None
        self.invalid = False  # the annotations cannot be read for now
        self.selectors: list[dict[str, str]] = []  # every selector the Service had

    @property
    def spec(self) -> RolloutSpec:
        return spec(**self.knobs)

    def cycle(self, analysis: Checked | None = None, advance: float = 0.0) -> None:
        current = INVALID if self.invalid else self.spec
        self.world.step(current, analysis, advance=advance)
        if self.world.selector not in self.selectors:
            self.selectors.append(dict(self.world.selector))
        self.check_invariants()

    def settle(self) -> None:
        for _ in range(10):
            before = (self.world.state, dict(self.world.selector), dict(self.world.twins))
            self.cycle()
            if (self.world.state, self.world.selector, self.world.twins) == before:
                return

    def apply(self, op: tuple[Any, ...]) -> None:
        world, kind = self.world, op[0]
        if kind == "check":
            self.hand_in_check(op[1])
        elif kind == "advance":
            self.cycle(advance=op[1])
        elif kind == "release":
            world.source = released(world.source, f"r{op[1]}")
        elif kind == "revert":
            world.source = released(world.source, world.state.stable_revision)
        elif kind == "action":
            self.actions += 1
            world.action = f"{op[1]} {self.actions}"
        elif kind in ("steps", "strategy"):
            self.knobs[kind] = op[1]
        elif kind == "paused":
            self.knobs["paused"] = "true" if op[1] else "false"
        elif kind == "ready":
            world.ready = op[1]
        elif kind == "delete_twin":
            world.twins.pop(op[1], None)
        elif kind == "scale_twin" and op[1] in world.twins:
            world.twins[op[1]] = replace(world.twins[op[1]], replicas=op[2])
        elif kind == "reset_selector":
            world.selector = {"app": "web"}  # a GitOps sync of the original Service
        elif kind == "invalid":
            self.invalid = op[1]
        elif kind == "edit_twin" and op[1] in world.twins:
            # `kubectl edit` of a twin's pod template: same revision annotation.
            world.twins[op[1]] = replace(world.twins[op[1]], edited_by="kubectl-edit")
        elif kind == "lose_history":
            world.records = []  # the ConfigMap deleted by someone cleaning up
        elif kind == "lose_status":
            world.state, world.lost = State(), "missing"  # an old export applied
        elif kind == "scale_source":
            world.source = replace(world.source, replicas=op[1])  # `kubectl scale` by the team
        elif kind == "old_export" and self.selectors:
            # The Service as exported a while ago, applied again: the selector
            # of then, and a status another manager wrote (not trusted).
            world.selector = dict(self.selectors[op[1] % len(self.selectors)])
            world.state, world.lost = State(), "written by kubectl-client-side-apply"
        elif kind == "undo":
            self.actions += 1
            world.action = f"undo {op[1]} {self.actions}"
        elif kind == "pinned":
            self.actions += 1
            meant = world.state.canary_revision if op[2] else "r9"  # r9: one replaced since
            world.action = f"{op[1]} revision={meant} {self.actions}"
        self.settle()
        self.check_serving()

    def hand_in_check(self, verdict: Verdict) -> None:
        """As the shell: a check starts when due and its result is handed to a
        later cycle, only if the rollout is still where it was."""
        world, state = self.world, self.world.state
        if self.pending is not None and self.pending[0] == where(state):
            checked, self.pending = self.pending[1], None
            self.cycle(checked)
            return
        self.pending = None
        if self.invalid:  # no check starts without a readable spec
            self.cycle(advance=10)
            return
        due = analysis_due(self.spec, state, world.now + 10, world.scrape, world.phase)
        if due is not None:
            self.cycle(advance=10)
            if where(world.state) == where(state):
                self.pending = (where(state), Checked(due.kind, result(verdict), world.now))

    def check_invariants(self) -> None:
        world, state = self.world, self.world.state
        if not state.adopted:
            return
        selector = world.selector
        assert TWIN_LABEL in selector or SERVICE_LABEL in selector, selector
        allowed = {state.stable_revision, state.canary_revision} - {""}
        for color, twin in world.twins.items():
            if twin.replicas and world._selects(color):
                assert twin.revision in allowed, (color, twin.revision, state)

    def check_serving(self) -> None:
        """Once settled, with pods that can get ready, the Service serves:
        whatever was deleted or scaled by hand is back (unless nothing keeps
        the stable revision's template any more, which the status says)."""
        world = self.world
        if not world.state.adopted or not world.ready or world.pending or self.invalid:
            return
        if "cannot be" in world.state.degraded:
            return
        observed = world.observed()
        assert observed.endpoints > 0, (world.selector, world.twins, world.state)

    def finish(self) -> None:
        """Everything stops: passing checks, no pause, nothing broken by hand."""
        world = self.world
        self.knobs["paused"] = "false"
        self.invalid = False
        world.ready = True
        self.actions += 1
        world.action = f"resume {self.actions}"
        for _ in range(60):
            self.settle()
            if world.state.canary is None and not world.state.halted:
                return
            if world.state.halted:
                self.actions += 1
                world.action = f"retry {self.actions}"
            self.cycle(advance=5)
            due = analysis_due(self.spec, world.state, world.now, world.scrape, world.phase)
            if due is not None:
                self.cycle(Checked(due.kind, result(Verdict.PASS), world.now))
        raise AssertionError(f"stuck: {world.state}")


def released(source: Source, revision: str) -> Source:
    """The team's Deployment at `revision`, with that revision's template."""
    return replace(
        source, revision=revision, template={"metadata": {"annotations": {"rev": revision}}}
    )


def where(state: State) -> tuple[Any, ...]:
    return (state.canary_revision, state.rollout_started, state.step, state.gate_wait)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATION, max_size=30))
def test_random_operations_never_crash_serve_the_wrong_pods_or_get_stuck(
    operations: list[tuple[Any, ...]],
) -> None:
    driver = Driver()
    for op in operations:
        driver.apply(op)
    driver.finish()
