"""Image pull back-off: how often a failed image pull is tried again, and what the pod shows meanwhile.

As the kubelet's image manager does it: a pull that fails makes the container wait with
``ErrImagePull`` (its message is the error; shown for ``ERR_IMAGE_PULL_SHOWN`` seconds) and starts
a back-off per pod and image (10 s, doubling to 300 s); until that back-off has passed, every sync of the pod answers
``ImagePullBackOff`` (``Back-off pulling image "x"``) without trying; the next try after it either
starts the container or fails again with a longer back-off. ``imagePullPolicy: Never`` with an
absent image is ``ErrImageNeverPull`` and never backs off (nothing is pulled).

Used by :mod:`kubelet.sync`, which asks :meth:`ImagePullBackoff.remaining` before creating a
container and reports failures with :meth:`ImagePullBackoff.failed`; the runtime decides whether an
image is present (it never reaches a registry: an image absent locally is a failed pull).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubelet.backoff import CrashLoopBackoff

__all__ = [
    "ERR_IMAGE_NEVER_PULL",
    "ERR_IMAGE_PULL",
    "ERR_IMAGE_PULL_SHOWN",
    "IMAGE_PULL_BACKOFF",
    "ImagePullBackoff",
    "backoff_message",
    "failed_event_message",
]

ERR_IMAGE_PULL = "ErrImagePull"
ERR_IMAGE_PULL_SHOWN = 5.0
"""Seconds a failed pull is shown as ``ErrImagePull`` before ``ImagePullBackOff`` (at most half the back-off):
the kubelet re-syncs on its own status writes, so without it the error would flip to the back-off at once."""
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
IMAGE_PULL_BACKOFF = "ImagePullBackOff"


def backoff_message(image: str) -> str:
    """The waiting message (and the ``BackOff`` event) between two tries."""
    return f'Back-off pulling image "{image}"'


def failed_event_message(image: str, error: str) -> str:
    """The ``Failed`` event of one failed try: ``Failed to pull image "x": <why>``."""
    prefix = f'failed to pull image "{image}": '
    why = error[len(prefix):] if error.lower().startswith(prefix) else error
    return f'Failed to pull image "{image}": {why}'


@dataclass
class ImagePullBackoff:
    """Per ``(pod uid, image)``: seconds until the next pull may be tried (Kubernetes' flowcontrol
    back-off, the same shape as the container restart back-off; an entry idle for twice the maximum
    is forgotten)."""

    base: float = 10.0
    maximum: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _backoff: CrashLoopBackoff = field(init=False)
    _errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._backoff = CrashLoopBackoff(base=self.base, maximum=self.maximum, clock=self.clock)

    @staticmethod
    def key(pod_uid: str, image: str) -> str:
        return f"{pod_uid}/{image}"

    def remaining(self, pod_uid: str, image: str) -> float:
        """Seconds before ``image`` may be tried again for this pod (0: now)."""
        return self._backoff.remaining(self.key(pod_uid, image))

    def since_failure(self, pod_uid: str, image: str) -> float:
        """Seconds since the last failed pull (inf: none remembered)."""
        delay = self._backoff.delay(self.key(pod_uid, image))
        remaining = self._backoff.remaining(self.key(pod_uid, image))
        return delay - remaining if delay and remaining else float("inf")

    def failed(self, pod_uid: str, image: str, error: str = "") -> float:
        """Record a failed pull now; the back-off it starts (10 s, 20 s, ... 300 s)."""
        key = self.key(pod_uid, image)
        self._backoff.next(key)
        self._errors[key] = error
        return self._backoff.delay(key)

    def delay(self, pod_uid: str, image: str) -> float:
        """The current back-off of ``image`` for this pod (0: none)."""
        return self._backoff.delay(self.key(pod_uid, image))

    def last_error(self, pod_uid: str, image: str) -> str:
        return self._errors.get(self.key(pod_uid, image), "")

    def forget_pod(self, pod_uid: str) -> None:
        self._backoff.forget_prefix(f"{pod_uid}/")
        for key in [k for k in self._errors if k.startswith(f"{pod_uid}/")]:
            del self._errors[key]
