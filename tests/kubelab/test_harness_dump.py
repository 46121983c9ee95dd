"""The failure dump of a namespace (kubelab.testing_dump): events, pods, logs of failed containers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kubelab.testing_dump import failed_containers, format_events, format_pods, namespace_state


def terminated(code: int, reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason}}


@pytest.mark.parametrize(("status", "expected"), [
    pytest.param({"containerStatuses": [{"name": "a", "state": {"running": {}}}]}, [], id="running"),
    pytest.param({"containerStatuses": [{"name": "a", "state": terminated(0, "Completed")}]}, [], id="exit-0"),
    pytest.param({"containerStatuses": [{"name": "a", "state": terminated(1)}]}, [("a", False)], id="exit-1"),
    pytest.param({"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                         "lastState": terminated(2)}]}, [("a", True)], id="crash-loop-previous"),
    pytest.param({"initContainerStatuses": [{"name": "init", "state": terminated(137)}],
                  "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]},
                 [("init", False)], id="init-container"),
])
def test_failed_containers(status: dict[str, Any], expected: list[tuple[str, bool]]) -> None:
    assert failed_containers({"status": status}) == expected


def test_events_are_listed_oldest_first_with_their_object_and_count() -> None:
    events = [
        {"lastTimestamp": "2026-01-01T00:00:05Z", "type": "Warning", "reason": "BackOff", "count": 3,
         "involvedObject": {"kind": "Pod", "name": "web"}, "message": "Back-off restarting failed container"},
        {"lastTimestamp": "2026-01-01T00:00:01Z", "type": "Normal", "reason": "Scheduled",
         "involvedObject": {"kind": "Pod", "name": "web"}, "message": "Successfully assigned"},
    ]
    assert format_events(events) == [
        "2026-01-01T00:00:01Z Normal Scheduled pod/web Successfully assigned",
        "2026-01-01T00:00:05Z Warning BackOff pod/web Back-off restarting failed container (x3)",
    ]


def test_events_of_the_same_second_keep_the_order_they_were_written_in() -> None:
    events = [{"lastTimestamp": "2026-01-01T00:00:01Z", "type": "Normal", "reason": reason,
               "metadata": {"resourceVersion": version}}
              for reason, version in [("Pulled", "12"), ("Scheduled", "9"), ("Started", "110")]]
    assert [line.split()[2] for line in format_events(events)] == ["Scheduled", "Pulled", "Started"]


def test_pods_show_phase_node_conditions_and_container_states() -> None:
    pod = {"metadata": {"name": "web"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running",
                      "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                      "containerStatuses": [{"name": "app", "ready": False, "restartCount": 4,
                                             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                             "lastState": terminated(1)}]}}
    assert format_pods([pod]) == [
        "pod/web phase=Running node=n1",
        "  condition Ready=False ContainersNotReady",
        "  container app ready=False restarts=4 state=waiting CrashLoopBackOff last=terminated Error exitCode=1",
    ]


class FakeReader:
    """Answers GETs from a path table; a missing path is a 404, an exception entry is raised."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.paths: list[str] = []

    def request(self, method: str, path: str, *, body: Any = None, accept: str = "application/json"
                ) -> tuple[int, bytes]:
        self.paths.append(path)
        answer = self.answers.get(path)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return 404, b"not found"
        return 200, answer if isinstance(answer, bytes) else orjson.dumps(answer)

    def get_json(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise OSError(f"HTTP {status}")
        return orjson.loads(data)


def test_namespace_state_has_events_pods_and_the_log_tail_of_failed_containers_only() -> None:
    pods = {"items": [
        {"metadata": {"name": "bad"}, "spec": {},
         "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "state": terminated(3)}]}},
        {"metadata": {"name": "good"}, "spec": {},
         "status": {"phase": "Running", "containerStatuses": [{"name": "c", "state": {"running": {}}}]}},
    ]}
    log = "\n".join(f"line {i}" for i in range(100)).encode()
    reader = FakeReader({
        "/api/v1/namespaces/ns/events": {"items": []},
        "/api/v1/namespaces/ns/pods": pods,
        "/api/v1/namespaces/ns/pods/bad/log?container=c&tailLines=30": log,
    })
    text = namespace_state(reader, "ns")
    assert "=== events in ns\n(none)" in text
    assert "pod/bad phase=Failed" in text and "pod/good phase=Running" in text
    assert "=== logs of bad/c, last 30 lines" in text
    assert "line 99" in text and "line 69" not in text.split("=== logs of bad/c")[1], "only the last 30 lines"
    assert not any("/pods/good/log" in path for path in reader.paths), "no logs of a healthy container"


def test_namespace_state_says_what_it_could_not_read_instead_of_raising() -> None:
    reader = FakeReader({"/api/v1/namespaces/ns/events": ConnectionRefusedError("refused")})
    text = namespace_state(reader, "ns")
    assert "(cannot list /api/v1/namespaces/ns/events: refused)" in text
    assert "(cannot list /api/v1/namespaces/ns/pods: HTTP 404)" in text
