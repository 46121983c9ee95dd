"""Calling the matching webhooks of one admission decision, with Kubernetes' semantics.

Mutating webhooks run one after another (configurations by name, then list order); each JSONPatch
is applied to the object before the next webhook sees it, and the result is decoded and defaulted
again. With ``reinvocationPolicy: IfNeeded`` a webhook runs once more when a later webhook changed
the object after it. Validating webhooks run in parallel on the final object; the first denial in
webhook order wins.

Outcomes, worded as kube-apiserver words them:

- a denial → the webhook's Status, ``admission webhook "<name>" denied the request: <message>``,
  its ``code`` (400 when absent or below 400) and ``reason``;
- a failed call (refused destination, connection error, timeout, non-2xx, garbage, an invalid
  review or an undecodable patch) → ``failurePolicy: Fail``: 500 ``InternalError``
  ``failed calling webhook "<name>": <why>``; ``Ignore``: logged, the request goes on;
- a dry-run request and a webhook whose ``sideEffects`` is neither None nor NoneOnDryRun → 400
  ``admission webhook "<name>" does not support dry run``;
- ``warnings`` of every webhook → ``Warning`` headers on the response.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import jsonpatch

from apiserver.watchcache import WatchCaches
from apiserver.webhooks.attributes import CONNECT, DELETE, Call
from apiserver.webhooks.client import CallError, WebhookClient
from apiserver.webhooks.config import Webhook, WebhookSource
from apiserver.webhooks.matching import (
    MatchConditionError,
    conditions_match,
    matched_resource,
    namespace_matches,
    object_matches,
)
from apiserver.webhooks.review import Verdict, at_version, review_request, verify_response
from machinery import api
from machinery.errors import ApiError, BadRequestError, StatusCause
from machinery.netguard import AllowedNetworks
from machinery.resources import MUTATINGWEBHOOKCONFIGURATIONS, NAMESPACES, VALIDATINGWEBHOOKCONFIGURATIONS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DRY_RUN_SAFE = frozenset({"None", "NoneOnDryRun"})


class WebhookRejection(ApiError):
    """A webhook's denial: the Status it answered, with the code and reason it chose."""

    def __init__(self, status: Obj) -> None:
        super().__init__(str(status.get("message") or ""))
        self.status = status

    def to_status(self) -> Obj:
        return self.status


_REJECTION_CLASSES: dict[tuple[int, str], type[WebhookRejection]] = {}


def rejection(hook_name: str, result: Obj) -> WebhookRejection:
    """Kubernetes' ``ToStatusErr``: the webhook's Status with a code >= 400 and a worded message."""
    denied = f'admission webhook "{hook_name}" denied the request'
    given = result.get("code")
    code = max(given if isinstance(given, int) else 0, 400)
    reason = str(result.get("reason") or "")
    message = str(result.get("message") or "")
    if message:
        text = f"{denied}: {message}"
    elif reason:
        text = f"{denied}: {reason}"
    else:
        text = f"{denied} without explanation"
    status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": text}
    if reason:
        status["reason"] = reason
    if isinstance(result.get("details"), dict):
        status["details"] = result["details"]
    status["code"] = code
    cls = _REJECTION_CLASSES.get((code, reason))
    if cls is None:
        attrs: dict[str, Any] = {"code": code, "reason": reason}
        cls = type(f"WebhookRejection{code}", (WebhookRejection,), attrs)
        _REJECTION_CLASSES[(code, reason)] = cls
    return cls(status)


def internal_error(message: str) -> ApiError:
    """Kubernetes' ``NewInternalError``."""
    return ApiError(f"Internal error occurred: {message}", causes=[StatusCause("", message, "")])


class AdmissionWebhooks:
    """The webhook half of admission for one apiserver."""

    def __init__(self, caches: WatchCaches, allowed: AllowedNetworks) -> None:
        self.source = WebhookSource(caches.get(MUTATINGWEBHOOKCONFIGURATIONS),
                                    caches.get(VALIDATINGWEBHOOKCONFIGURATIONS))
        self.client = WebhookClient(caches, allowed)
        self._namespaces = caches.get(NAMESPACES)

    def active(self) -> bool:
        """Whether any webhook configuration exists at all."""
        return self.source.any()

    async def close(self) -> None:
        await self.client.close()

    def _namespace_labels(self, name: str) -> dict[str, str] | None:
        ns = self._namespaces.get(NAMESPACES.storage_key(None, name))
        return None if ns is None else dict((ns.get("metadata") or {}).get("labels") or {})

    # ---- one webhook -------------------------------------------------------------------------
    def _wants(self, hook: Webhook, call: Call) -> Any:
        """The resource version the webhook sees the call as, or None when it is not called."""
        seen_as = matched_resource(hook, call)
        if seen_as is None or not namespace_matches(hook, call, self._namespace_labels):
            return None
        return seen_as if object_matches(hook, call) else None

    async def _call(self, hook: Webhook, call: Call, seen_as: Any, warnings: list[str]) -> Verdict | None:
        """Ask one webhook; None when it is skipped or failed open. Raises denials and failures."""
        if call.dry_run and hook.side_effects not in DRY_RUN_SAFE:
            raise BadRequestError(f'admission webhook "{hook.name}" does not support dry run')
        review = review_request(call, seen_as)
        uid = review["request"]["uid"]
        try:
            if hook.match_conditions and not conditions_match(hook, {
                    "object": review["request"]["object"], "oldObject": review["request"]["oldObject"],
                    "request": review["request"]}):
                return None
            answer = await self.client.post(hook, review)
            verdict = verify_response(answer, uid, mutating=hook.mutating)
        except (CallError, MatchConditionError) as exc:
            message = f'failed calling webhook "{hook.name}": {exc}'
            if hook.fail_closed:
                raise internal_error(message) from None
            log.warning("failing open: %s (%s %s %s/%s)", message, call.operation, call.resource.group_resource,
                        call.namespace, call.name)
            return None
        warnings.extend(verdict.warnings)
        if not verdict.allowed:
            raise rejection(hook.name, verdict.status)
        return verdict

    # ---- mutating ----------------------------------------------------------------------------
    async def mutate(self, call: Call, warnings: list[str]) -> int:
        """Run the matching mutating webhooks; ``call.object`` is patched in place.

        Returns how many webhook calls changed the object."""
        changes = 0
        called_at: dict[int, int] = {}  # index of an IfNeeded webhook -> changes seen when it ran
        hooks = self.source.mutating()
        for index, hook in enumerate(hooks):
            if await self._mutate_once(hook, call, warnings):
                changes += 1
            if hook.reinvocation_policy == "IfNeeded":
                called_at[index] = changes
        for index, seen in called_at.items():
            if changes > seen and await self._mutate_once(hooks[index], call, warnings):
                changes += 1
        return changes

    async def _mutate_once(self, hook: Webhook, call: Call, warnings: list[str]) -> bool:
        seen_as = self._wants(hook, call)
        if seen_as is None:
            return False
        verdict = await self._call(hook, call, seen_as, warnings)
        if verdict is None or verdict.patch is None:
            return False
        if call.object is None or call.operation in (DELETE, CONNECT):
            raise internal_error(f'admission webhook "{hook.name}" attempted to modify the object, which is not '
                                 "supported for this operation")
        return self._apply(hook, call, seen_as, verdict.patch)

    def _apply(self, hook: Webhook, call: Call, seen_as: Any, patch: jsonpatch.JsonPatch) -> bool:
        assert call.object is not None
        current = at_version(call.object, call, seen_as)
        try:
            patched = patch.apply(copy.deepcopy(current))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
            raise internal_error(f'admission webhook "{hook.name}" returned a patch that does not apply: '
                                 f"{exc}") from None
        if not isinstance(patched, dict):
            raise internal_error(f'admission webhook "{hook.name}" patched the object into a non-object')
        r = call.resource
        patched["apiVersion"] = call.object.get("apiVersion", r.api_version)
        if api.model_for(r.api_version, r.kind) is not None and patched.get("kind") == r.kind:
            try:
                patched, _ = api.prepare(patched, api_version=r.api_version, kind=r.kind, field_validation="Ignore")
            except ApiError as exc:
                raise internal_error(f'admission webhook "{hook.name}" patched the object into one that does '
                                     f"not decode: {exc.message}") from None
        if patched == call.object:
            return False
        call.object.clear()
        call.object.update(patched)
        return True

    # ---- validating --------------------------------------------------------------------------
    async def validate(self, call: Call, warnings: list[str]) -> None:
        """Run the matching validating webhooks in parallel; raise the first failure in order."""
        calls = [(hook, seen_as) for hook in self.source.validating()
                 if (seen_as := self._wants(hook, call)) is not None]
        if not calls:
            return
        results = await asyncio.gather(*(self._call(hook, call, seen_as, warnings) for hook, seen_as in calls),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
