"""``kubelab scheduler | controller-manager | kubelet`` flags → settings, and ``up --hollow-nodes``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kubelab import cli, launcher


def capture_run(monkeypatch: pytest.MonkeyPatch, module: str) -> list[Any]:
    seen: list[Any] = []
    fake = type(sys)(module)
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module, fake)
    return seen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], {"config": None, "leader_elect": False, "metrics_port": 0}, id="defaults"),
        pytest.param(["--config", "/c.yaml", "--leader-elect", "--metrics-port", "10259"],
                     {"config": Path("/c.yaml"), "leader_elect": True, "metrics_port": 10259}, id="all-flags"),
    ],
)
def test_scheduler_flags(monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: dict[str, Any]) -> None:
    seen = capture_run(monkeypatch, "scheduler.server")
    assert cli.main(["scheduler", "--kubeconfig", "/kc", *argv]) == 0
    (settings,) = seen
    assert settings.kubeconfig == Path("/kc")
    assert {name: getattr(settings, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], {"leader_elect": True, "node_monitor_grace_period": 40.0,
                          "default_unreachable_toleration_seconds": 300}, id="defaults"),
        pytest.param(["--no-leader-elect", "--node-monitor-grace-period", "4", "--pod-eviction-timeout", "5"],
                     {"leader_elect": False, "node_monitor_grace_period": 4.0, "pod_eviction_timeout": 5.0,
                      "default_unreachable_toleration_seconds": 5, "default_not_ready_toleration_seconds": 5},
                     id="lab-timeouts"),
    ],
)
def test_controller_manager_flags(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                  expected: dict[str, Any]) -> None:
    seen = capture_run(monkeypatch, "controllers.server")
    assert cli.main(["controller-manager", "--kubeconfig", "/kc", *argv]) == 0
    (settings,) = seen
    assert {name: getattr(settings, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--node-name", "n1"], {"node_names": ["n1"], "hollow": False, "cpu": "4", "memory": "8Gi",
                                             "pods": 110, "taints": [], "labels": {}}, id="defaults"),
        pytest.param(["--node-name", "h", "--hollow", "--count", "3", "--taint", "a=b:NoSchedule",
                      "--taint", "c:NoExecute", "--labels", "zone=x,tier=y", "--cpu", "8", "--memory", "16Gi",
                      "--pods", "50", "--crash-loop-base-delay", "1", "--node-lease-renew-interval", "2"],
                     {"node_names": ["h-1", "h-2", "h-3"], "hollow": True, "cpu": "8", "memory": "16Gi", "pods": 50,
                      "taints": [{"key": "a", "value": "b", "effect": "NoSchedule"},
                                 {"key": "c", "effect": "NoExecute"}],
                      "labels": {"zone": "x", "tier": "y"}, "crash_loop_base_delay": 1.0,
                      "lease_renew_interval": 2.0}, id="hollow-all-flags"),
    ],
)
def test_kubelet_flags(monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: dict[str, Any]) -> None:
    seen = capture_run(monkeypatch, "kubelet.server")
    assert cli.main(["kubelet", "--kubeconfig", "/kc", *argv]) == 0
    (settings,) = seen
    assert settings.kubeconfig == Path("/kc")
    assert {name: getattr(settings, name) for name in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--node-name", "n", "--taint", "a=b"], id="taint-without-effect"),
        pytest.param(["--node-name", "n", "--labels", "zone"], id="label-without-value"),
        pytest.param([], id="no-node-name"),
    ],
)
def test_kubelet_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["kubelet", "--kubeconfig", "/kc", *argv])
    assert exit_info.value.code == 2


def test_kubelet_count_needs_hollow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    capture_run(monkeypatch, "kubelet.server")
    assert cli.main(["kubelet", "--kubeconfig", "/kc", "--node-name", "n", "--count", "2"]) == 2
    assert "--count needs --hollow" in capsys.readouterr().err


@pytest.mark.slow
def test_up_with_hollow_nodes_status_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = tmp_path / "state"
    args = ["--state-dir", str(state_dir)]
    try:
        assert cli.main(["up", *args, "--port", "0", "--hollow-nodes", "3", "--timeout", "60"]) == 0
        out = capsys.readouterr().out
        for name in ("scheduler", "controller-manager", "kubelet-hollow"):
            assert f"started {name} (pid" in out
        for i in (1, 2, 3):
            assert f"hollow-node-{i}   Ready    v1.32.0-kubelab" in out
        kubeconfig = state_dir / "kubeconfigs" / "kubelet-hollow.kubeconfig"
        assert kubeconfig.stat().st_mode & 0o777 == 0o600

        assert cli.main(["status", *args]) == 0
        out = capsys.readouterr().out
        assert "kubelet-hollow" in out and "scheduler" in out and "nodes: 3/3 Ready" in out

        assert cli.main(["down", *args]) == 0
        out = capsys.readouterr().out
        assert out.index("stopped kubelet-hollow") < out.index("stopped apiserver")
        assert launcher.list_processes(state_dir) == []
    finally:
        for process in launcher.list_processes(state_dir):
            launcher.stop_process(state_dir, process.name, grace=2)
