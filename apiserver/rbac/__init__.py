"""Authorisation with Kubernetes' RBAC: roles, bindings, the default policy, reviews, escalation checks.

::

    request ─ authn ─ impersonation ─ filter.authorize_request ─ handler ─ registry ─ escalation (RBAC kinds)
                                          │ requestinfo: verb, resource, namespace, name | path
                                          ▼
                             authorizer.RbacAuthorizer ── resolver ── index.RbacIndex ◀── CacheFeed ◀── watch caches
                                                                         rules.PolicyRule (matching, covers)

* :mod:`.rules` — a policy rule, matching, covering; :mod:`.index` — roles and bindings by subject,
  fed from the watch caches; :mod:`.resolver` — a user's rules; :mod:`.authorizer` — decisions.
* :mod:`.requestinfo` + :mod:`.filter` — every request's attributes and the 403.
* :mod:`.escalation` — you cannot grant what you do not hold (``escalate``, ``bind``).
* :mod:`.policy` + :mod:`.bootstrap` — Kubernetes' default roles and bindings, reconciled at start.
* :mod:`.reviews` — SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview,
  SelfSubjectRulesReview.

:func:`install_rbac` wires it into an application; ``apiserver.app`` calls it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from apiserver.authz import AUTHORIZER
from apiserver.context import ApiContext
from apiserver.rbac.authorizer import RbacAuthorizer
from apiserver.rbac.bootstrap import ensure_default_policy
from apiserver.rbac.escalation import install_checks
from apiserver.rbac.filter import authorize_request, authorizer_for
from apiserver.rbac.reviews import VIRTUAL_RESOURCES as ACCESS_REVIEWS

log = logging.getLogger(__name__)

POLICY_VISIBLE_SECONDS = 30.0

__all__ = ["ACCESS_REVIEWS", "authorize_request", "install_rbac"]


def install_rbac(app: web.Application, ctx: ApiContext) -> None:
    """Set the application's authorizer from ``--authorization-mode``; with RBAC, add the escalation
    checks; on startup, reconcile the default policy and wait until the watch caches hold it."""
    authorizer = authorizer_for(ctx.settings.authorization_mode, ctx.caches)
    app[AUTHORIZER] = authorizer
    if isinstance(authorizer, RbacAuthorizer):
        install_checks(ctx, authorizer)

    async def default_policy(_: web.Application) -> None:
        revision = await ensure_default_policy(ctx)
        if not await ctx.caches.wait_for_revision(revision, POLICY_VISIBLE_SECONDS):
            log.warning("the watch caches have not reached revision %d: early requests may be refused", revision)

    app.on_startup.append(default_policy)
