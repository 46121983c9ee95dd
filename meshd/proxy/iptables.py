"""``python -m meshd.proxy.iptables``: the ``istio-init`` step, Istio's ``istio-iptables`` flags in, rules applied.

The ``istio-init`` init container (added by the injector unless meshd runs in CNI mode) runs this
with Istio's flags. The flags and the ``nat`` table rules are pure text in
:mod:`machinery.meshcapture` (the node agent applies the same rules in CNI mode);
:mod:`meshd.proxy.iptables_apply` feeds them to ``iptables-restore`` in the pod's network namespace
(the container has ``NET_ADMIN`` and ``NET_RAW``). The proxy finds the address a redirected
connection was meant for with ``SO_ORIGINAL_DST``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from machinery.meshcapture import CaptureConfig, parse_args, restore_input, rules

__all__ = ["CaptureConfig", "main", "parse_args", "restore_input", "rules"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meshd.proxy.iptables``: parse, print the rules, apply them (unless ``--dry-run``)."""
    try:
        config, dry_run = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = restore_input(config)
    print(text, end="", flush=True)
    if dry_run:
        return 0
    from meshd.proxy.iptables_apply import IptablesError, apply  # I/O only when really applying

    try:
        print(apply(text), end="", flush=True)
    except IptablesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
