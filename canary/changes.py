"""What changed from one history entry to the next: images, config (which
ConfigMap or Secret), or only the rest of the pod template. Worked out when
the history is shown, from the images and config hashes each entry keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JSON = dict[str, Any]


def change(record: JSON, earlier: Sequence[JSON]) -> JSON:
    """{"kind": first | again | image | config | image+config | template,
    "config": [names of the ConfigMaps and Secrets that changed],
    "images": [images that are new], "same_as": number} for one entry,
    against the entries before it (oldest first)."""
    for before in reversed(earlier):
        if before.get("revision") == record.get("revision"):
            # An undo or a revert: the very same template and config again.
            return {"kind": "again", "same_as": before.get("number")}
    if not earlier:
        return {"kind": "first"}
    previous = earlier[-1]
    old_images, new_images = previous.get("images") or [], record.get("images") or []
    old_config: JSON = previous.get("config") or {}
    new_config: JSON = record.get("config") or {}
    config = sorted(
        name
        for name in set(old_config) | set(new_config)
        if old_config.get(name) != new_config.get(name)
    )
    images = [image for image in new_images if image not in old_images]
    image_changed = list(old_images) != list(new_images)
    if image_changed and config:
        kind = "image+config"
    elif image_changed:
        kind = "image"
    elif config:
        kind = "config"
    else:
        kind = "template"  # env, resources, a restart: the template alone
    result: JSON = {"kind": kind}
    if config:
        result["config"] = config
    if images:
        result["images"] = images
    return result


def changes(records: Sequence[JSON]) -> list[JSON]:
    return [change(record, records[:i]) for i, record in enumerate(records)]


def summary(entry: JSON) -> str:
    """A short cell for the history table."""
    kind = entry.get("kind")
    if kind == "again":
        return f"same as #{entry.get('same_as')}"
    if kind == "first":
        return "-"
    if kind in ("config", "image+config"):
        names = ", ".join(entry.get("config") or [])
        return f"config only: {names}" if kind == "config" else f"image, config: {names}"
    return str(kind)
