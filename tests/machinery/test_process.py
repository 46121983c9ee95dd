"""run_until_signalled: returns when serve() does, and KUBELAB_PROFILE leaves a cProfile dump."""

from __future__ import annotations

import asyncio
import pstats
from pathlib import Path

import pytest

from machinery.process import run_until_signalled


def test_returns_when_serve_returns_and_profiles_on_request(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("KUBELAB_PROFILE", str(tmp_path / "prof"))
    ran: list[str] = []

    async def serve() -> None:
        await asyncio.sleep(0.01)
        ran.append("served")

    run_until_signalled(serve, name="unit")
    assert ran == ["served"]
    [dump] = (tmp_path / "prof").glob("unit-*.prof")
    functions = {name for _, _, name in pstats.Stats(str(dump)).stats}  # type: ignore[attr-defined]
    assert "serve" in functions


def test_no_profile_without_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBELAB_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)

    async def serve() -> None:
        return None

    run_until_signalled(serve, name="unit")
    assert list(tmp_path.rglob("*.prof")) == []
