"""Profiling the apiserver during bench phases with py-spy, and ranking the hot spots.

``bench.apiserver --profile DIR`` gives each :class:`~bench.phases.Bench` a :class:`Profiler`:
one ``py-spy record --format raw`` (collapsed stacks) per phase, written to
``DIR/<store>-<phase>.txt``. :func:`top_functions` reads such a file and ranks functions by
self and inclusive share of samples; ``python -m bench.hotspots FILE...`` prints that table.
py-spy is a dev tool (``.venv/bin/pip install py-spy``), not a dependency; without it the
bench runs unprofiled and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy_binary() -> str | None:
    """``py-spy`` next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy over one process, one output file per named phase."""

    def __init__(self, pid: int, out_dir: Path, *, prefix: str, rate: int = 200) -> None:
        self.pid = pid
        self.out_dir = out_dir
        self.prefix = prefix
        self.rate = rate
        self.binary = py_spy_binary()
        self._proc: subprocess.Popen[bytes] | None = None
        if self.binary is None:
            print("  (py-spy not found: .venv/bin/pip install py-spy; running unprofiled)", flush=True)

    def start(self, phase: str) -> None:
        if self.binary is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{self.prefix}-{phase}.txt"
        self._proc = subprocess.Popen(
            [self.binary, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw",
             "--threads", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)


def _frame_name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def top_functions(path: Path, *, limit: int = 25, within: str = "") -> tuple[int, list[tuple[str, float, float]]]:
    """Total samples, and ``(function, self %, inclusive %)`` by descending inclusive share.

    ``within`` keeps only stacks with a frame containing that text (e.g. ``_run_once``: the
    event-loop thread), so threads parked in C (the SQLite writer's queue wait) do not dilute it.
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames or (within and not any(within in f for f in frames)):
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    rows = [(name, 100 * own[name] / total, 100 * incl[name] / total) for name in incl] if total else []
    rows.sort(key=lambda row: (-row[2], -row[1]))
    return total, rows[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description="rank functions in py-spy raw (collapsed) profiles")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--by", choices=("self", "inclusive"), default="inclusive")
    parser.add_argument("--within", default="_run_once",
                        help="only stacks through a frame containing this ('' = all threads)")
    args = parser.parse_args()
    for path in args.files:
        total, rows = top_functions(path, limit=10_000, within=args.within)
        if args.by == "self":
            rows.sort(key=lambda row: -row[1])
        print(f"== {path} ({total} samples)")
        print(f"{'self%':>7} {'incl%':>7}  function")
        for name, self_pct, incl_pct in rows[: args.limit]:
            print(f"{self_pct:7.1f} {incl_pct:7.1f}  {name}")


if __name__ == "__main__":
    main()
