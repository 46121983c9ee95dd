"""``python -m meshd.proxy``: the sidecar's entry point (flags and environment → settings → run)."""

from __future__ import annotations

import sys

from meshd.proxy.proxy import run
from meshd.proxy.settings import from_env


def main() -> None:
    sys.exit(run(from_env()))


if __name__ == "__main__":
    main()
