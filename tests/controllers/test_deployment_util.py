"""Pure Deployment arithmetic: hash, fenceposts, revisions, template equality, proportional scaling."""

from __future__ import annotations

from typing import Any

import pytest

from controllers import deployment_util as du

Obj = dict[str, Any]
TEMPLATE: Obj = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def test_hash_is_stable_and_safe() -> None:
    h = du.compute_hash(TEMPLATE)
    assert h == du.compute_hash({"spec": TEMPLATE["spec"], "metadata": {"labels": {"app": "web"}}})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert h == du.compute_hash({**TEMPLATE, "metadata": {"labels": {"app": "web", du.HASH_LABEL: "x"},
                                                          "creationTimestamp": None}})
    assert du.compute_hash(TEMPLATE, 1) != h
    assert du.compute_hash({**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}) != h


def test_fnv32a_and_safe_encode_known_values() -> None:
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.safe_encode("0123") == "".join("bcdfghjklmnpqrstvwxz2456789"[b % 27] for b in b"0123")


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    pytest.param("25%", "25%", 10, (3, 2), id="percent-rounding"),
    pytest.param("25%", "25%", 1, (1, 0), id="one-replica"),
    pytest.param(0, 0, 5, (0, 1), id="both-zero"),
    pytest.param(2, "50%", 5, (2, 2), id="mixed"),
    pytest.param("0%", "0%", 3, (0, 1), id="percent-zero"),
])
def test_resolve_fenceposts(surge: int | str, unavailable: int | str, desired: int,
                            expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == expected


def _d(want: int, surge: int | str = "25%", unavailable: int | str = "25%", **status: int) -> Obj:
    return {"metadata": {"name": "web", "generation": 1, "annotations": {}},
            "spec": {"replicas": want, "template": TEMPLATE,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}},
            "status": status}


def _rs(name: str, replicas: int, created: str, **ann: str) -> Obj:
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": dict(ann)},
            "spec": {"replicas": replicas, "template": TEMPLATE}}


def test_max_unavailable_capped_by_replicas() -> None:
    assert du.max_unavailable(_d(2, 0, 5)) == 2
    assert du.max_unavailable(_d(0)) == 0
    assert du.max_surge({**_d(4), "spec": {**_d(4)["spec"], "strategy": {"type": "Recreate"}}}) == 0


@pytest.mark.parametrize(("template", "equal"), [
    pytest.param({"metadata": {"labels": {"app": "web", du.HASH_LABEL: "abc"}}, "spec": TEMPLATE["spec"]}, True,
                 id="hash-label-ignored"),
    pytest.param({"metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
                  "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {}}]}}, True,
                 id="null-and-empty-ignored"),
    pytest.param({"metadata": {"labels": {"app": "web"}},
                  "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}, False, id="image-differs"),
])
def test_equal_ignore_hash(template: Obj, equal: bool) -> None:
    assert du.equal_ignore_hash(template, TEMPLATE) is equal


def test_new_rs_annotations_rollback_keeps_history() -> None:
    d = _d(3)
    d["metadata"]["annotations"] = {du.CHANGE_CAUSE: "undo", du.LAST_APPLIED: "{}", du.REVISION: "2"}
    rs = _rs("web-a", 0, "2024-01-01T00:00:00Z", **{du.REVISION: "1"})
    assert du.set_new_rs_annotations(d, rs, 3, exists=True)
    ann = rs["metadata"]["annotations"]
    assert ann[du.REVISION] == "3" and ann[du.REVISION_HISTORY] == "1" and ann[du.CHANGE_CAUSE] == "undo"
    assert du.LAST_APPLIED not in ann and du.DESIRED_REPLICAS not in ann
    assert not du.set_new_rs_annotations(d, rs, 3, exists=True)
    rs2 = _rs("web-b", 0, "2024-01-01T00:00:00Z")
    du.set_new_rs_annotations(d, rs2, 4, exists=False)
    assert rs2["metadata"]["annotations"][du.DESIRED_REPLICAS] == "3"
    assert rs2["metadata"]["annotations"][du.MAX_REPLICAS] == "4"
    assert du.REVISION_HISTORY not in rs2["metadata"]["annotations"]


def test_find_new_rs_picks_oldest_equal_template() -> None:
    a = _rs("a", 1, "2024-01-01T00:00:02Z")
    b = _rs("b", 1, "2024-01-01T00:00:01Z")
    other = {**_rs("c", 1, "2024-01-01T00:00:00Z"), "spec": {"template": {"metadata": {}}}}
    new = du.find_new_rs(_d(2), [a, b, other])
    assert new is b
    assert du.find_old_rss(_d(2), [a, b, other], new) == [a, other]
    assert du.max_revision([_rs("x", 0, "", **{du.REVISION: "7"}), _rs("y", 0, "", **{du.REVISION: "x"})]) == 7


@pytest.mark.parametrize(("current", "new_size", "want"), [
    pytest.param(10, 0, 3, id="room-for-surge"),
    pytest.param(13, 3, 3, id="at-max"),
    pytest.param(5, 5, 10, id="capped-by-desired"),
])
def test_new_rs_replicas(current: int, new_size: int, want: int) -> None:
    d = _d(10)  # surge 3
    new = _rs("new", new_size, "2024-01-01T00:00:01Z")
    old = _rs("old", current - new_size, "2024-01-01T00:00:00Z")
    assert du.new_rs_replicas(d, [old, new], new) == want


def test_proportional_scaling_mid_rollout() -> None:
    # Kubernetes' documented example: 10 replicas, surge 3, rollout 8 old + 5 new, scaled to 15.
    d = _d(15, 3, 2, replicas=13)
    old = _rs("old", 8, "2024-01-01T00:00:00Z", **{du.MAX_REPLICAS: "13"})
    new = _rs("new", 5, "2024-01-01T00:00:01Z", **{du.MAX_REPLICAS: "13"})
    sizes = du.proportional_sizes(d, [old, new])
    assert sum(sizes.values()) == 18
    assert sizes == {"old": 11, "new": 7}
    d0 = _d(0, 3, 2, replicas=13)
    assert du.proportional_sizes(d0, [old, new]) == {"old": 0, "new": 0}


def test_set_condition_keeps_transition_time() -> None:
    status: Obj = {}
    first = {"type": "Progressing", "status": "True", "reason": "A", "lastTransitionTime": "t1",
             "lastUpdateTime": "t1", "message": ""}
    du.set_condition(status, first)
    du.set_condition(status, {**first, "reason": "B", "lastTransitionTime": "t2", "lastUpdateTime": "t2"})
    cond = du.get_condition(status, "Progressing")
    assert cond is not None and cond["reason"] == "B" and cond["lastTransitionTime"] == "t1"
    du.set_condition(status, {**first, "reason": "B", "lastUpdateTime": "t3"})
    assert du.get_condition(status, "Progressing") == cond
