"""Network audit for the test suite: a test fails if anything connects outside 127.0.0.0/8.

Built on :class:`machinery.netguard.ConnectAudit` (a ``sys.addaudithook`` on ``socket.connect``,
``sendto`` and ``sendmsg`` that refuses before the system call, so nothing is dialled):

* :func:`process_audit` -- the test process' audit, installed once (loopback only), idle until a
  fixture activates it;
* ``netaudit`` -- function fixture: the test runs under the audit and fails if it recorded a
  violation;
* ``netaudit_processes`` -- module fixture for suites that start real kubelab processes: sets
  ``KUBELAB_NETAUDIT=<file>`` so every ``python -m kubelab`` started meanwhile (``kubelab up``,
  the apiserver, the kubelets …) installs the same audit and appends its violations to the file;
  activates the test process' audit too. Yields a :class:`NetAudit`; ``check()`` fails the calling
  test on any violation so far, in any process.

Suites import the fixtures (``from tests.netaudit import netaudit_processes``), e.g. from
``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machinery.netguard import AUDIT_ENV, AllowedNetworks, ConnectAudit, install_connect_audit

__all__ = ["NetAudit", "netaudit", "netaudit_processes", "process_audit"]

_INSTALLED: list[ConnectAudit] = []


def process_audit() -> ConnectAudit:
    """This process' loopback-only audit (installed on first use, inactive until activated)."""
    if not _INSTALLED:
        audit = install_connect_audit(AllowedNetworks())
        audit.active = False
        _INSTALLED.append(audit)
    return _INSTALLED[0]


@dataclass
class NetAudit:
    """The violations recorded by the test process and by the kubelab processes it started."""

    audit: ConnectAudit
    record: Path

    def violations(self) -> list[str]:
        """Everything recorded since the audit was activated, in this process and the spawned ones."""
        spawned = self.record.read_text().splitlines() if self.record.exists() else []
        return [*self.audit.violations, *spawned]

    def check(self) -> None:
        found = self.violations()
        if found:
            pytest.fail("connections outside 127.0.0.0/8 were attempted (refused, never dialled):\n"
                        + "\n".join(found), pytrace=False)


@pytest.fixture
def netaudit(tmp_path: Path) -> Iterator[NetAudit]:
    """The test runs under the loopback-only audit and fails on any violation."""
    audit = process_audit()
    was_active, before = audit.active, len(audit.violations)
    audit.active = True
    result = NetAudit(audit, tmp_path / "netaudit.log")
    try:
        yield result
    finally:
        audit.active = was_active  # a module-wide audit (netaudit_processes) stays on
    if len(audit.violations) > before:
        pytest.fail("connections outside 127.0.0.0/8 were attempted (refused, never dialled):\n"
                    + "\n".join(audit.violations[before:]), pytrace=False)


@pytest.fixture(scope="module")
def netaudit_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetAudit]:
    """Audit this process and every kubelab process started while the module runs."""
    record = tmp_path_factory.mktemp("netaudit") / "violations.log"
    record.touch()
    audit = process_audit()
    audit.violations.clear()
    audit.active = True
    before = os.environ.get(AUDIT_ENV)
    os.environ[AUDIT_ENV] = str(record)
    try:
        yield NetAudit(audit, record)
    finally:
        audit.active = False
        if before is None:
            os.environ.pop(AUDIT_ENV, None)
        else:
            os.environ[AUDIT_ENV] = before
