"""The root filesystem of ``kubelab/busybox:1.35``: Debian's dynamically linked ``busybox`` with the shared
libraries it loads, every applet linked under ``/bin``, and scripts where Debian's build lacks what
tutorials use.

Called by :mod:`kubelab.images` (which imports the tar into Docker); this module only assembles the tar, in
memory, from files on this host, in well under a second.

Why the dynamic build: Debian's ``busybox-static`` is built with FEATURE_SH_STANDALONE, so its ``sh`` runs
its own applets before looking at ``PATH`` and no script in ``/bin`` can stand in for one inside
``sh -c`` or an interactive shell. The dynamic ``busybox`` package's ``sh`` looks commands up in ``PATH``
like any shell, so the scripts below serve every way a command is started: exec form
(``command: [wget, ...]``), ``sh -c``, and commands typed into ``kubectl run -it -- sh``. Its libraries
(``libc.so.6``, ``libresolv.so.2`` and the loader, as ``ldd`` lists them) come from this Debian host,
the same distribution as the binary: about 3 MB in all.

What Debian's busybox 1.35 lacks, and the stand-ins:

* ``wget -T SEC`` -- built without FEATURE_WGET_TIMEOUT, so parsing ``-T`` writes through a null pointer
  (SIGSEGV on every request). ``/bin/wget`` strips ``-T``/``--timeout`` and runs the applet under
  busybox ``timeout``: the limit bounds the whole request (where busybox's own bounds each connect and
  read, the same for a tutorial's small responses); on expiry it prints ``wget: download timed out``
  and exits 1, as busybox does.
* ``nc -z`` -- the small ``nc`` has no ``-z`` (nor ``-v``, ``-n``). ``/bin/nc`` connects with nothing to
  send (stdin ``/dev/null``, so the applet closes at once): 0 when the port accepts, 1 when not;
  ``-v`` reports ``open``.
* ``printenv`` -- no applet; ``/bin/printenv`` prints the named variables (exit 1 if one is unset), or
  all of them.

* ``nslookup kubernetes.default`` -- busybox's own resolver sends a name with a dot as it is, never with
  ``/etc/resolv.conf``'s search list (busybox 1.28 resolved through the C library, which does; hence the
  tutorials' habit). ``/bin/nslookup`` tries the name as that resolver would: with each search domain
  first when it has fewer dots than ``ndots``, and prints the first answer (addresses and names ending
  in a dot go as they are).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

__all__ = ["BUSYBOX_BINARY", "BusyboxError", "busybox_rootfs_tar", "shared_libraries"]

BUSYBOX_BINARY = Path("/bin/busybox")
PROXY_UID = 1337
"""The mesh sidecar's user, known to the image's ``/etc/passwd`` (``proxy``)."""


class BusyboxError(RuntimeError):
    """The host's busybox cannot make the image (the message says what to install)."""


WGET_WRAPPER = """#!/bin/busybox sh
# Debian's busybox 1.35 wget is built without -T (parsing it crashes): the timeout is applied around the
# applet instead, bounding the whole request.
t= want=
for a do
  shift
  if [ -n "$want" ]; then t=$a; want=; continue; fi
  case $a in
    -T|--timeout) want=1; continue ;;
    -T*) t=${a#-T}; continue ;;
    --timeout=*) t=${a#--timeout=}; continue ;;
  esac
  set -- "$@" "$a"
done
[ -z "$t" ] && exec /bin/busybox wget "$@"
# Waited for with the shell's stderr closed: the shell reports "Terminated" when the limit strikes.
/bin/busybox timeout "$t" /bin/busybox wget "$@" &
pid=$!
trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM HUP
wait "$pid" 2>/dev/null
rc=$?
if [ "$rc" -eq 143 ]; then echo "wget: download timed out" >&2; exit 1; fi
exit "$rc"
"""
"""``/bin/wget`` of the busybox image."""

NC_WRAPPER = """#!/bin/busybox sh
# Debian's busybox 1.35 nc has no -z (does the port accept?), -v or -n: -z connects with nothing to
# send, so the applet closes at once (0: open, 1: not).
z= v=
for a do
  shift
  case $a in
    -[zvn]*)
      flags=${a#-}
      while [ -n "$flags" ]; do
        case $flags in
          z*) z=1 ;;
          v*) v=1 ;;
          n*) ;;
          *) set -- "$@" "-$flags"; break ;;
        esac
        flags=${flags#?}
      done
      continue ;;
  esac
  set -- "$@" "$a"
done
[ -z "$z" ] && exec /bin/busybox nc "$@"
if [ -z "$v" ]; then exec /bin/busybox nc "$@" </dev/null >/dev/null 2>&1; fi
/bin/busybox nc "$@" </dev/null >/dev/null || exit 1
eval "host=\\${$(($# - 1))} port=\\${$#}"
echo "$host ($host:$port) open" >&2
"""
"""``/bin/nc`` of the busybox image."""

PRINTENV = """#!/bin/busybox sh
# printenv [NAME...]: Debian's busybox has no printenv applet.
[ $# -eq 0 ] && exec /bin/busybox env
rc=0
for n do
  case $n in ''|*[!A-Za-z0-9_]*) rc=1; continue ;; esac
  eval "if [ -n \\"\\${$n+x}\\" ]; then printf '%s\\n' \\"\\$$n\\"; else rc=1; fi"
done
exit "$rc"
"""
"""``/bin/printenv`` of the busybox image."""

NSLOOKUP_WRAPPER = """#!/bin/busybox sh
# busybox 1.35's nslookup sends a dotted name (kubernetes.default) as it is, never with the search list:
# names are tried as the C library's resolver does (resolv.conf's search list and ndots).
host=
for a do case $a in -*) ;; *) host=$a; break ;; esac; done
case $host in
  ''|*.|*:*) exec /bin/busybox nslookup "$@" ;;  # absolute, IPv6 or no name: as it is
  *[!0-9.]*) ;;
  *) exec /bin/busybox nslookup "$@" ;;  # an IPv4 address
esac
ndots=1 search=
while read -r key rest; do
  case $key in
    search) search=$rest ;;
    options) for o in $rest; do case $o in ndots:*) ndots=${o#ndots:} ;; esac; done ;;
  esac
done </etc/resolv.conf
try() {  # try NAME ARGS...: nslookup ARGS with the host replaced by NAME, its output kept in $out
  name=$1 first=1
  shift
  for a do
    shift
    case $a in -*) ;; *) if [ -n "$first" ]; then a=$name; first=; fi ;; esac
    set -- "$@" "$a"
  done
  out=$(/bin/busybox nslookup "$@" 2>&1)
}
dots=$(printf %s "$host" | /bin/busybox tr -cd . | /bin/busybox wc -c)
if [ "$dots" -ge "$ndots" ]; then
  try "$host" "$@" && { printf '%s\n' "$out"; exit 0; }
  first_out=$out
fi
for d in $search; do
  try "$host.$d" "$@" && { printf '%s\n' "$out"; exit 0; }
done
[ "$dots" -ge "$ndots" ] && { printf '%s\n' "$first_out"; exit 1; }
exec /bin/busybox nslookup "$@"
"""
"""``/bin/nslookup`` of the busybox image."""

SCRIPTS = {"wget": WGET_WRAPPER, "nc": NC_WRAPPER, "printenv": PRINTENV, "nslookup": NSLOOKUP_WRAPPER}
"""``/bin`` entries that are scripts rather than links to the binary."""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BusyboxError(f"{' '.join(command)} failed to run: {exc}") from exc


def _applets(binary: Path) -> list[str]:
    result = _run([str(binary), "--list"])
    if result.returncode != 0:
        raise BusyboxError(f"{binary} --list exited with {result.returncode}: {result.stderr.strip()}")
    return sorted({name for name in result.stdout.split() if name and name != "busybox" and "/" not in name})


def shared_libraries(binary: Path) -> list[Path]:
    """The absolute paths ``ldd`` resolves for ``binary``, the loader included (vdso excluded).

    Raises :class:`BusyboxError` for a static binary: its ``sh`` would run its own applets (see the
    module docstring)."""
    result = _run(["ldd", str(binary)])
    paths = []
    for line in result.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        target = line.partition("=>")[2] if "=>" in line else line
        path = target.strip().partition(" (")[0].strip()
        if path.startswith("/"):
            paths.append(Path(path))
    if result.returncode != 0 or not paths:
        raise BusyboxError(f"{binary} is not a dynamically linked busybox (Debian's busybox-static?): its sh "
                           "would run its own wget and nc; install Debian's busybox package (scripts/setup)")
    return paths


def busybox_rootfs_tar(binary: Path = BUSYBOX_BINARY) -> bytes:
    """The busybox image's root filesystem as an uncompressed tar (in memory, about 3 MB)."""
    if not binary.is_file():
        raise BusyboxError(f"{binary} is missing: install Debian's busybox package (run scripts/setup)")
    libraries = shared_libraries(binary)
    now = int(time.time())
    buffer = io.BytesIO()
    made: set[str] = set()

    def add(name: str, kind: bytes, *, mode: int = 0o755, data: bytes = b"", link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname, info.size = kind, mode, now, link, len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)

    def directory(name: str, mode: int = 0o755) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in made:
                made.add(path)
                add(path, tarfile.DIRTYPE, mode=mode if path == name else 0o755)

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("bin", "etc", "usr/bin", "var/www"):
            directory(name)
        directory("root", 0o700)
        directory("tmp", 0o1777)
        for library in libraries:
            # The file itself at the path the binary asks for (the host's may be a symlink).
            directory(str(library.parent).lstrip("/"))
            add(str(library).lstrip("/"), tarfile.REGTYPE, data=library.resolve().read_bytes())
        add("bin/busybox", tarfile.REGTYPE, data=binary.read_bytes())
        for applet in sorted({*_applets(binary), *SCRIPTS}):
            if applet in SCRIPTS:
                add(f"bin/{applet}", tarfile.REGTYPE, data=SCRIPTS[applet].encode())
            else:
                add(f"bin/{applet}", tarfile.SYMTYPE, mode=0o777, link="busybox")
        add("usr/bin/env", tarfile.SYMTYPE, mode=0o777, link="/bin/busybox")  # for "#!/usr/bin/env" scripts
        passwd = f"root:x:0:0:root:/root:/bin/sh\nproxy:x:{PROXY_UID}:{PROXY_UID}:proxy:/:/bin/sh\n"
        group = f"root:x:0:\nproxy:x:{PROXY_UID}:\n"
        add("etc/passwd", tarfile.REGTYPE, mode=0o644, data=passwd.encode())
        add("etc/group", tarfile.REGTYPE, mode=0o644, data=group.encode())
    return buffer.getvalue()
