"""Config copies (`<name>-<revision>`) deleted by hand while a twin reads them.

A twin's pods read the copies of its revision. Deleting one (a cleanup script,
`kubectl delete cm -l ...`, a namespace janitor) does not stop the running
pods, but every new pod of that twin (a restart, a drain, an HPA scale-up)
cannot start: an outage that waits for the next bad day. The copy is put
back from the content the controller last saw of it (the ConfigMap and
Secret watches deliver it with the deletion), or, after a restart, from the
team's own object when that is unchanged since the revision (its hash is the
one the source runs, or the history recorded, for that revision). Without
either, a Warning says how to recover.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from canary.act import COPY_OF, Actor
from canary.model import JSON, Emit, Observed
from canary.observe import config_data
from canary.revisions import config_hash, config_refs, copy_name
from canary.spec import REVISION_ANNOTATION
from canary.twins import twin_name

log = logging.getLogger(__name__)

Lookup = Callable[[str, str], JSON | None]
GoneKey = tuple[str, str, str]  # (namespace, kind, name)


class CopyKeeper:
    def __init__(self) -> None:
        # Copies seen deleted, by the Service they were made for: their last content.
        self._gone: dict[str, dict[GoneKey, JSON]] = {}
        self._warned: set[GoneKey] = set()

    def deleted(self, namespace: str, kind: str, obj: JSON, service: str) -> None:
        meta = obj.get("metadata") or {}
        if COPY_OF in (meta.get("annotations") or {}):
            key = (namespace, kind, str(meta.get("name", "")))
            self._gone.setdefault(f"{namespace}/{service}", {})[key] = obj

    def forget(self, namespace: str, service: str) -> None:
        """The Service is handed back: its copies are no longer ours to keep."""
        self._gone.pop(f"{namespace}/{service}", None)

    async def restore(
        self,
        actor: Actor,
        observed: Observed,
        lookup: Lookup,
        records: list[JSON],
    ) -> None:
        """Put back every copy gone that a twin of this Service with pods reads.
        `records`: the history; which copies a revision had is in its config
        hashes (an `optional` reference to an object that did not exist names
        a copy that never existed either, and is no loss)."""
        stash = f"{observed.namespace}/{observed.service}"
        gone = self._gone.get(stash, {})
        read: set[GoneKey] = set()  # what a twin still reads: the rest is forgotten
        source_refs = {  # the team's objects the source reads, by their copy's name
            copy_name(name, observed.source.revision): (kind, name)
            for kind, _, name in (ref.partition("/") for ref in observed.source.config)
        }
        configs = {str(r.get("revision")): r.get("config") or {} for r in records}
        for color, twin in sorted(observed.twins.items()):
            if not (twin.exists and twin.revision and twin.service == observed.service):
                continue
            found = lookup("Deployment", twin_name(observed.deployment, color))
            template = ((found or {}).get("spec") or {}).get("template") or {}
            suffix = f"-{twin.revision}"
            for kind, name in sorted(set(config_refs(template))):
                if not name.endswith(suffix) or lookup(kind, name) is not None:
                    continue
                key = (observed.namespace, kind, name)
                read.add(key)
                content, origin = gone.get(key), "the controller's last view of it"
                if twin.replicas == 0:
                    continue  # no pod to start: kept for when it has some again
                annotations = ((content or {}).get("metadata") or {}).get("annotations") or {}
                original = str(annotations.get(COPY_OF, name[: -len(suffix)]))
                ref = source_refs.get(name)
                same = observed.source.revision == twin.revision  # the original is unchanged
                if same and ref is not None and ref[0] == kind:
                    original = ref[1]
                # The hash of the revision's content: the source's when it
                # runs that revision, else the history's. Mid-rollout (an
                # image release) the stable twin's config is most often
                # unchanged too; taken only when the source ran the twin's
                # revision, its copy deleted while down was not put back,
                # and the stable twin's new pods could not start.
                wanted = (
                    observed.source.config.get(f"{kind}/{original}")
                    if same
                    else configs.get(twin.revision, {}).get(f"{kind}/{original}")
                )
                if content is None and wanted is not None:
                    found = lookup(kind, original)
                    # Read again after the cycle's writes: edited since the
                    # cycle observed it, it is no longer the revision's content.
                    if found is not None and config_hash(config_data(found)) == wanted:
                        content = found
                        origin = f"{kind} {original}, unchanged since that revision"
                if content is None:
                    if f"{kind}/{original}" in configs.get(twin.revision, {}) and (
                        key not in self._warned
                    ):
                        self._warned.add(key)
                        await actor.emit(_missing(kind, name, color, twin.revision, observed))
                    continue
                made = await actor.restore_config_copy(kind, original, twin.revision, content)
                if made is None:
                    continue  # held back by the write guard (WriteLoop): kept for later
                gone.pop(key, None)  # a failure above keeps it for the retry
                self._warned.discard(key)
                if not made:
                    continue  # there after all (made a moment ago, not yet seen)
                log.info("%s/%s: %s %s put back", observed.namespace, observed.service, kind, name)
                await actor.emit(
                    Emit(
                        "ConfigRestored",
                        f"{kind} {name}, which the {color} twin's pods read (revision "
                        f"{twin.revision}), was deleted; put back from {origin}, so its new "
                        "pods can start",
                    )
                )
        # Also those of a revision the history keeps: no twin runs it now
        # (a janitor of unmounted ConfigMaps deletes just those), but an
        # undo may. Forgotten, the undo's pods could not start.
        kept = {k: v for k, v in gone.items() if k in read or _revision(v) in configs}
        if kept:
            self._gone[stash] = kept
        else:
            self._gone.pop(stash, None)


def _revision(copy: JSON) -> str:
    annotations = (copy.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(REVISION_ANNOTATION, ""))


def _missing(kind: str, name: str, color: str, revision: str, observed: Observed) -> Emit:
    return Emit(
        "ConfigCopyMissing",
        f"{kind} {name}, which the {color} twin's pods read (revision {revision}), was "
        "deleted while the controller did not watch, and the original has changed since: "
        "its running pods go on, but new ones (a restart, a drain, a scale-up) cannot "
        f"start. Recreate it, or release again (kubectl rollout restart deployment/"
        f"{observed.deployment}) so the current config goes out with copies of its own",
        warning=True,
    )
