"""Validation of ephemeral containers (``spec.ephemeralContainers``, the ``kubectl debug`` containers).

Ephemeral containers are added to a running pod through the ``pods/ephemeralcontainers``
subresource only: a pod cannot be created with them, the main update cannot change them, and the
subresource may only append (an existing one is never removed or changed). Each one follows
Kubernetes' rules: a name unique among all the pod's containers, a ``targetContainerName`` naming
one of its (init or regular) containers, and none of the fields that would make it part of the
workload (ports, probes, resources, lifecycle, restart policy, resize policy, ``subPath`` mounts).

:func:`ephemeral_update` (a context manager) marks the subresource's write; :func:`check_pod` is
called by :mod:`machinery.api.validation` for every Pod create and update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from machinery.api.names import Errors

__all__ = ["FORBIDDEN_FIELDS", "check_pod", "ephemeral_update", "in_ephemeral_update"]

Obj = dict[str, Any]

FORBIDDEN_FIELDS = ("ports", "resources", "resizePolicy", "lifecycle", "livenessProbe", "readinessProbe",
                    "startupProbe", "restartPolicy")
"""Container fields an ephemeral container may not set (Kubernetes allows a list; these are the rest)."""

_FIELD = "cannot be set for an Ephemeral Container"
_SUBRESOURCE: ContextVar[bool] = ContextVar("ephemeral_update", default=False)


@contextlib.contextmanager
def ephemeral_update() -> Iterator[None]:
    """Within: pod writes are the ``ephemeralcontainers`` subresource's (they may append)."""
    token = _SUBRESOURCE.set(True)
    try:
        yield
    finally:
        _SUBRESOURCE.reset(token)


def in_ephemeral_update() -> bool:
    return _SUBRESOURCE.get()


def check_pod(errs: Errors, spec: Obj, old_spec: Obj | None) -> None:
    """Record the problems of ``spec.ephemeralContainers`` of a pod being created (``old_spec``
    None) or updated."""
    new = [c for c in spec.get("ephemeralContainers") or [] if isinstance(c, dict)]
    old = [c for c in (old_spec or {}).get("ephemeralContainers") or [] if isinstance(c, dict)]
    if old_spec is None:
        if new:
            errs.forbidden("spec.ephemeralContainers", "cannot be set on create")
        return
    if new == old:
        return
    if not in_ephemeral_update():
        return  # the main update: the caller's "may not change fields" rule covers it
    _containers(errs, spec, new)
    by_name = {str(c.get("name")): c for c in new}
    for container in old:
        name = str(container.get("name"))
        if name not in by_name:
            errs.forbidden("spec.ephemeralContainers", f'existing ephemeral containers "{name}" may not be removed\n')
        elif by_name[name] != container:
            errs.forbidden(f"spec.ephemeralContainers[{name}]",
                           f'existing ephemeral containers "{name}" may not be changed\n')


def _containers(errs: Errors, spec: Obj, ephemeral: list[Obj]) -> None:
    others = {str(c.get("name")) for key in ("containers", "initContainers") for c in spec.get(key) or []
              if isinstance(c, dict)}
    seen = set(others)
    for i, container in enumerate(ephemeral):
        path = f"spec.ephemeralContainers[{i}]"
        name = container.get("name")
        if not name:
            errs.required(f"{path}.name")
        elif name in seen:
            errs.duplicate(f"{path}.name", name)
        else:
            seen.add(str(name))
        if not container.get("image"):
            errs.required(f"{path}.image")
        target = container.get("targetContainerName")
        if target and target not in others:
            errs.not_found(f"{path}.targetContainerName", target)
        for field in FORBIDDEN_FIELDS:
            if container.get(field):
                errs.forbidden(f"{path}.{field}", _FIELD)
        for j, mount in enumerate(container.get("volumeMounts") or []):
            for field in ("subPath", "subPathExpr"):
                if isinstance(mount, dict) and mount.get(field):
                    errs.forbidden(f"{path}.volumeMounts[{j}].{field}", _FIELD)
