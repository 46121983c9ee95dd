"""Apply capture rules in the current network namespace with ``iptables-restore`` (the I/O half of istio-init).

Called by :func:`meshd.proxy.iptables.main` inside the ``istio-init`` container, which shares the
pod's network namespace and runs as root with ``NET_ADMIN`` and ``NET_RAW``. The image carries
Debian's ``iptables`` (the nf_tables variant, ``iptables-nft``, which works in a container given
``NET_ADMIN``; the legacy variant is used when only it is installed).

:func:`apply` is idempotent: an init container that runs again (its pod's sandbox was kept) first
removes the ``ISTIO_*`` chains and the jumps to them, then restores the rules, and returns
``iptables-save -t nat`` so the container log shows what the pod's traffic goes through.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

__all__ = ["IptablesError", "apply", "binaries", "cleanup_commands"]

_TIMEOUT = 30.0


class IptablesError(Exception):
    """iptables is missing or refused the rules (the message carries its stderr)."""


def binaries() -> tuple[str, str, str]:
    """(iptables, iptables-restore, iptables-save): the nft variant first, as Debian's default."""
    for suffix in ("-nft", "", "-legacy"):
        found = [shutil.which(f"iptables{suffix}"), shutil.which(f"iptables{suffix}-restore"),
                 shutil.which(f"iptables{suffix}-save")]
        if all(found):
            return str(found[0]), str(found[1]), str(found[2])
    raise IptablesError("iptables is not installed in this image (iptables-restore not found)")


def _run(command: list[str], stdin: str | None = None) -> str:
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise IptablesError(f"{shlex.join(command)}: {exc}") from exc
    if result.returncode != 0:
        raise IptablesError(f"{shlex.join(command)} exited with {result.returncode}: "
                            f"{(result.stderr or result.stdout).strip()}")
    return result.stdout


def cleanup_commands(saved_nat: str) -> list[list[str]]:
    """``iptables -t nat`` argument lists that undo earlier capture rules found in ``iptables-save -t nat``
    output: delete the jumps from built-in chains, then flush and delete the ``ISTIO_*`` chains."""
    deletes: list[list[str]] = []
    chains: list[str] = []
    for line in saved_nat.splitlines():
        if line.startswith(":ISTIO_"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A ") and not line.split()[1].startswith("ISTIO_") and " -j ISTIO_" in line:
            deletes.append(["-D", *shlex.split(line)[1:]])
    flushes = [["-F", chain] for chain in chains]
    removals = [["-X", chain] for chain in chains]
    return [*deletes, *flushes, *removals]


def apply(restore_input: str) -> str:
    """Replace any earlier capture rules with ``restore_input``; the resulting ``iptables-save -t nat``."""
    iptables, restore, save = binaries()
    for args in cleanup_commands(_run([save, "-t", "nat"])):
        _run([iptables, "-t", "nat", *args])
    _run([restore, "--noflush"], stdin=restore_input)
    return _run([save, "-t", "nat"])
