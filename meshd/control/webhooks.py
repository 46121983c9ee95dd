"""meshd's webhook server on port 15017 (HTTPS): sidecar injection and Istio resource validation.

The apiserver calls it through the ``istiod`` Service (:mod:`meshd.control.bootstrap`), verifying
its certificate for ``istiod.istio-system.svc`` against the mesh root (the webhook
configurations' ``caBundle``).

* ``POST /inject`` -- a pod's AdmissionReview, answered by
  :func:`meshd.control.injector.handle_admission_review` (the injector owns the answer).
* ``POST /validate`` -- an Istio object's AdmissionReview: :func:`meshd.control.istio_validation.validate`
  refuses (``allowed: false``, ``configuration is invalid: ...``, as Istio words it) or allows
  with ``warnings`` naming each accepted-but-unimplemented field (kubectl prints them as
  ``Warning: ...``). DELETE and objects of other groups are allowed as they are.
* ``GET /ready`` -- 200 (for probes and tests).

An aiohttp application embedded with ``AppRunner`` (tests run it in-process).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from machinery.pki import write_private_file
from meshd.control import injector
from meshd.control.istio_validation import validate
from meshd.control.settings import MeshdSettings

__all__ = ["WebhookServer", "review_validation"]

log = logging.getLogger(__name__)

_MAX_BODY = 8 * 1024 * 1024


def review_validation(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answering a validation request."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    obj = request.get("object")
    kind = str((request.get("kind") or {}).get("kind") or "")
    if request.get("operation") in ("CREATE", "UPDATE") and isinstance(obj, dict):
        errors, warnings = validate(kind, obj)
        if errors:
            response["allowed"] = False
            response["status"] = {"status": "Failure", "code": 400, "reason": "BadRequest",
                                  "message": "configuration is invalid: " + ", ".join(errors)}
        if warnings:
            response["warnings"] = warnings
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
            "response": response}


class WebhookServer:
    def __init__(self, settings: MeshdSettings, *, chain_pem: bytes, key_pem: bytes, work_dir: Path) -> None:
        self.settings = settings
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        chain_file, key_file = work_dir / "webhook-chain.pem", work_dir / ".webhook-key.pem"
        write_private_file(chain_file, chain_pem, mode=0o644)
        write_private_file(key_file, key_pem)
        try:
            self.context.load_cert_chain(chain_file, key_file)
        finally:
            key_file.unlink(missing_ok=True)
        self.runner: web.AppRunner | None = None
        self.port = settings.webhook_port

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/inject", self._inject)
        app.router.add_post("/validate", self._validate)
        app.router.add_get("/ready", self._ready)
        return app

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.bind_address, self.settings.webhook_port,
                           ssl_context=self.context, backlog=256)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _review(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    async def _inject(self, request: web.Request) -> web.Response:
        review = await self._review(request)
        if review is None:
            return web.Response(status=400, text="expected an AdmissionReview")
        try:
            answer = injector.handle_admission_review(review, self.settings)
        except Exception as exc:  # the injector must answer; a bug must not become a hung request
            log.exception("injection failed")
            uid = (review.get("request") or {}).get("uid", "")
            answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "response": {"uid": uid, "allowed": False,
                                   "status": {"code": 500, "message": f"injection failed: {exc}"}}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _validate(self, request: web.Request) -> web.Response:
        review = await self._review(request)
        if review is None:
            return web.Response(status=400, text="expected an AdmissionReview")
        return web.Response(body=orjson.dumps(review_validation(review)), content_type="application/json")

    async def _ready(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")
