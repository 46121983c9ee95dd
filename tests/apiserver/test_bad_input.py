"""Bad input never hurts the apiserver: every refusal is a Kubernetes ``Status`` with the code
Kubernetes uses, nothing is written, and the server keeps serving.

The corpus lives in ``bad_inputs.py``. Each case is sent to the embedded apiserver (memory
store) after ConfigMap ``default/probe`` and Deployment ``default/web`` exist; afterwards the
store's revision and every listed object's resourceVersion must be unchanged and the probe
must still be served. A hypothesis test posts random JSON documents built from real field
names; the last test races 50 creates of one name.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.apiserver.bad_inputs import ALL_CASES, CM, DEPLOY, MIB, Case, broken, deployment
from tests.apiserver.conftest import Api

T = TypeVar("T")

REQUEST_TIMEOUT = 10.0
# Collections whose contents must not move when a request is refused.
WATCHED_COLLECTIONS = ("/api/v1/configmaps", "/apis/apps/v1/deployments", "/api/v1/pods", "/api/v1/namespaces",
                       "/api/v1/secrets", "/api/v1/services")

Snapshot = dict[str, Any]


async def timed(awaitable: Awaitable[T]) -> T:
    """Every request has a deadline: a hang is a failure, not a stuck test run."""
    return await asyncio.wait_for(awaitable, REQUEST_TIMEOUT)


async def send(api: Api, c: Case) -> tuple[int, Any, list[str]]:
    """Send a case; returns (HTTP status, parsed body, Warning headers)."""
    data = c.raw if c.raw is not None else (orjson.dumps(c.body) if c.body is not None else None)
    headers = dict(c.headers)
    if data is not None and c.content_type:
        headers["Content-Type"] = c.content_type
    resp = await timed(api.response(c.method, c.path, data=data, headers=headers))
    async with resp:
        text = await timed(resp.read())
        try:
            body: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            body = text.decode(errors="replace")
        return resp.status, body, resp.headers.getall("Warning", [])


async def snapshot(api: Api) -> Snapshot:
    """The store revision plus ``namespace/name -> resourceVersion`` of every watched collection."""
    result: Snapshot = {}
    for path in WATCHED_COLLECTIONS:
        status, body = await timed(api.request("GET", path))
        assert status == 200, body
        result[path] = {f"{(i['metadata'].get('namespace') or '')}/{i['metadata']['name']}":
                        i["metadata"]["resourceVersion"] for i in body["items"]}
        result.setdefault("revision", body["metadata"]["resourceVersion"])
    return result


def assert_status(body: Any, *, code: int, reason: str, mentions: tuple[str, ...] = ()) -> None:
    """``body`` is a failure ``Status`` with ``code``/``reason`` whose text names ``mentions``."""
    assert isinstance(body, dict), f"not a Status: {body!r:.300}"
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    assert body.get("code") == code, body
    assert body.get("reason") == reason, body
    message = body.get("message")
    assert isinstance(message, str) and message, body
    text = message + " " + json.dumps(body.get("details") or {})
    for needle in mentions:
        assert needle in text, f"{needle!r} not named in {text!r:.500}"


async def assert_still_serving(api: Api, probe_rv: str) -> None:
    status, probe = await timed(api.request("GET", f"{CM}/probe"))
    assert status == 200 and probe["metadata"]["resourceVersion"] == probe_rv, probe
    status, health = await timed(api.request("GET", "/healthz"))
    assert status == 200, health


@pytest.fixture
async def seeded(api: Api) -> Api:
    """The API with the objects the corpus refers to."""
    status, body = await api.request("POST", CM, {"metadata": {"name": "probe"}, "data": {"k": "v"}})
    assert status == 201, body
    status, body = await api.request("POST", DEPLOY, deployment("web"))
    assert status == 201, body
    return api


# ---- the corpus ---------------------------------------------------------------------------------
@pytest.mark.parametrize("c", ALL_CASES)
async def test_bad_input_is_refused_cleanly(seeded: Api, c: Case) -> None:
    before = await snapshot(seeded)
    probe_rv = before["/api/v1/configmaps"]["default/probe"]
    status, body, _ = await send(seeded, c)
    assert status == c.code, f"{c.method} {c.path[:80]} -> {status}: {body!r:.400}"
    assert_status(body, code=c.code, reason=c.reason, mentions=c.mentions)
    assert await snapshot(seeded) == before, "a refused request changed the store"
    await assert_still_serving(seeded, probe_rv)


# ---- accepted inputs next to the refused ones -----------------------------------------------------
async def test_warn_keeps_object_and_names_unknown_field(seeded: Api) -> None:
    body = broken(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(bogus=1), name="warned")
    resp = await timed(seeded.response("POST", DEPLOY + "?fieldValidation=Warn", json=body))
    async with resp:
        created = await resp.json()
        warnings = resp.headers.getall("Warning", [])
    assert resp.status == 201, created
    assert any("spec.template.spec.containers[0].bogus" in w for w in warnings), warnings
    assert all(w.startswith("299 ") for w in warnings), warnings
    assert "bogus" not in created["spec"]["template"]["spec"]["containers"][0]


async def test_ignore_drops_unknown_field_silently(seeded: Api) -> None:
    body = broken(lambda d: d["spec"].update(bogus={"x": 1}), name="ignored")
    resp = await timed(seeded.response("POST", DEPLOY + "?fieldValidation=Ignore", json=body))
    async with resp:
        created = await resp.json()
        assert resp.status == 201, created
        assert resp.headers.getall("Warning", []) == []
    status, stored = await timed(seeded.request("GET", f"{DEPLOY}/ignored"))
    assert status == 200 and "bogus" not in stored["spec"] and "bogus" not in created["spec"]


async def test_duplicate_keys_warn_by_default(seeded: Api) -> None:
    raw = b'{"metadata":{"name":"dup-a"},"metadata":{"name":"dup-b"}}'
    resp = await timed(seeded.response("POST", CM, data=raw, headers={"Content-Type": "application/json"}))
    async with resp:
        created = await resp.json()
        warnings = resp.headers.getall("Warning", [])
    assert resp.status == 201 and created["metadata"]["name"] == "dup-b", created  # the last one wins
    assert any('duplicate field \\"metadata\\"' in w or 'duplicate field "metadata"' in w for w in warnings), warnings


async def test_configmap_under_the_data_limit_is_accepted(seeded: Api) -> None:
    data = {"k": "x" * (MIB // 2)}
    status, created = await timed(seeded.request("POST", CM, {"metadata": {"name": "half-mib"}, "data": data}))
    assert status == 201, str(created)[:300]
    status, stored = await timed(seeded.request("GET", f"{CM}/half-mib"))
    assert status == 200 and stored["data"] == data


# ---- concurrency --------------------------------------------------------------------------------
async def test_concurrent_creates_of_one_name(seeded: Api) -> None:
    async def create(i: int) -> tuple[int, Any]:
        return await timed(seeded.request("POST", CM, {"metadata": {"name": "race"}, "data": {"i": str(i)}}))

    results = await asyncio.gather(*(create(i) for i in range(50)))
    created = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status != 201]
    assert len(created) == 1 and len(refused) == 49, [s for s, _ in results]
    for body in refused:
        assert_status(body, code=409, reason="AlreadyExists", mentions=('configmaps "race" already exists',))
    status, stored = await timed(seeded.request("GET", f"{CM}/race"))
    assert status == 200 and stored["metadata"]["uid"] == created[0]["metadata"]["uid"]
    assert stored["data"] == created[0]["data"]


# ---- random documents ---------------------------------------------------------------------------
FIELD_NAMES = ("apiVersion", "kind", "metadata", "name", "namespace", "generateName", "labels", "annotations",
               "resourceVersion", "spec", "replicas", "selector", "matchLabels", "template", "containers",
               "image", "ports", "containerPort", "data", "binaryData", "immutable", "status", "app")
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**40), max_value=2**40)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "web", "nginx", "apps/v1", "v1", "ConfigMap", "Deployment", "default", "x" * 70])
           | st.text(max_size=12))
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
DOCUMENTS = st.dictionaries(
    KEYS,
    st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                 max_leaves=25),
    max_size=6,
)
# What a refused random document may be told, by code.
REASONS_4XX = {400: ("BadRequest",), 404: ("NotFound",), 409: ("AlreadyExists",), 422: ("Invalid",)}

# Valid objects with one field overwritten reach the deeper layers (defaulting, validation, admission).
VALID = {CM: {"metadata": {"name": "cm", "labels": {"app": "cm"}}, "data": {"k": "v"}}, DEPLOY: deployment("dep")}
MUTATION_PATHS = {
    CM: ("metadata", "metadata.name", "metadata.labels", "metadata.annotations", "data", "data.k", "binaryData",
         "immutable", "kind", "apiVersion"),
    DEPLOY: ("metadata.name", "metadata.labels", "spec", "spec.replicas", "spec.selector", "spec.selector.matchLabels",
             "spec.template", "spec.template.metadata", "spec.template.spec", "spec.template.spec.containers",
             "spec.template.spec.containers.0", "spec.template.spec.containers.0.image",
             "spec.template.spec.containers.0.ports", "spec.template.spec.containers.0.name", "spec.strategy"),
}
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=10)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(collection path, a valid object with 1-3 fields replaced by random values)."""
    target = draw(st.sampled_from(sorted(VALID)))
    obj = copy.deepcopy(VALID[target])
    obj["metadata"]["name"] = draw(st.sampled_from(["a", "b", "c", "web-1"]))
    for path in draw(st.lists(st.sampled_from(MUTATION_PATHS[target]), min_size=1, max_size=3)):
        *parents, last = path.split(".")
        node = _child_at(obj, parents)
        if isinstance(node, dict):
            node[last] = draw(VALUES)
        elif isinstance(node, list) and node:
            node[0] = draw(VALUES)
    return target, obj


def _child_at(node: Any, parts: list[str]) -> Any:
    """The value at ``parts`` (dict keys, list indices), or None once the path no longer exists."""
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


REQUESTS = st.tuples(st.sampled_from((CM, DEPLOY)), DOCUMENTS) | mutated()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(request=REQUESTS)
async def test_random_documents_never_break_the_server(seeded: Api, request: tuple[str, dict[str, Any]]) -> None:
    target, document = request
    try:
        status, body = await timed(seeded.request("POST", target, document))
    except (TimeoutError, aiohttp.ClientError) as exc:  # a hang or a dropped connection
        pytest.fail(f"POST {target} {document!r:.300} -> {exc!r}")
    assert status == 201 or 400 <= status < 500, f"{status}: {body!r:.300} for {document!r:.300}"
    event(f"{target.rsplit('/', 1)[-1]} {status}")
    if status == 201:
        status, stored = await timed(seeded.request("GET", f"{target}/{body['metadata']['name']}"))
        assert status == 200 and stored["metadata"]["uid"] == body["metadata"]["uid"]
    else:
        assert isinstance(body, dict) and body.get("reason") in REASONS_4XX.get(status, ()), body
        assert_status(body, code=status, reason=str(body["reason"]))
    status, _ = await timed(seeded.request("GET", "/healthz"))
    assert status == 200


async def test_unknown_field_with_control_characters_warns_safely(seeded: Api) -> None:
    body = {"metadata": {"name": "ctl"}, "data": {}, "bad\nfield\u00e9": 1}
    resp = await timed(seeded.response("POST", CM, data=orjson.dumps(body),
                                       headers={"Content-Type": "application/json"}))
    async with resp:
        warnings = resp.headers.getall("Warning", [])
        assert resp.status == 201
    assert warnings == ['299 - "unknown field \\"bad\\u000afield\\u00e9\\""']
