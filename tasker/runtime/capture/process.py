"""Facts about the running process that a run records: host, PID, user, script, command, and
which kernel and PID namespace the PID belongs to.

Everything is read once per process (and again after a fork, when the PID changes): tracking a
run must not cost a system call per field.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tasker.runtime.pid import current_pid
from tasker.runtime.storable import LONG_BYTES, warn
from tasker.validate import WIDTHS, fit_text

__all__ = [
    "ProcessInfo",
    "boot_time",
    "cpu_seconds",
    "in_worker_process",
    "note_fork",
    "process_info",
    "process_start",
    "process_start_time",
    "process_start_uptime",
    "usage",
]


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    hostname: str
    process_id: int
    parent_pid: int | None
    process_start_time: float | None
    user_name: str | None
    python_version: str
    command_line: str
    script_path: str | None
    script_filename: str | None
    # A PID means something only to the kernel that handed it out, and only inside its PID
    # namespace: a hostname alone does not say which. A container on the host network (or
    # ``unshare --pid``) has the host's name but PIDs of its own, and a host that rebooted
    # has the same name and a fresh set of PIDs. The reaper checks a PID only when both of
    # these match its own (None where unknown: not Linux, or /proc not readable).
    boot_id: str | None = None
    pid_namespace: str | None = None
    # When the process started, in seconds after its kernel booted: with boot_id and the
    # PID, what identifies the process (process_start_uptime).
    process_start_uptime: float | None = None
    # The command line and script path may be more than every server takes in one
    # statement: a run's start is then fitted to the server's limit (tasker.runtime.storable).
    long_texts: bool = False


# The facts made storable (escaped, cut to their columns' widths) as they are read, once per
# process; each change is told once, also across forks.
_FACT_FIELDS = (
    "hostname",
    "user_name",
    "python_version",
    "command_line",
    "script_path",
    "script_filename",
    "boot_id",
    "pid_namespace",
)
_told: set[str] = set()


def _storable(info: ProcessInfo) -> ProcessInfo:
    changes: dict[str, Any] = {}
    for field in _FACT_FIELDS:
        value = getattr(info, field)
        if value is None:
            continue
        fixed, said = fit_text(value, f"{field} (of this process)", WIDTHS.get(field))
        if fixed != value:
            changes[field] = fixed
        if said and field not in _told:
            _told.add(field)
            for sentence in said:
                warn(sentence)
    fixed_info = dataclasses.replace(info, **changes) if changes else info
    size = 4 * (len(fixed_info.command_line) + len(fixed_info.script_path or ""))
    return dataclasses.replace(fixed_info, long_texts=True) if size > LONG_BYTES else fixed_info


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers with an arbitrary uid)
        return os.environ.get("USER") or None


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (Linux); None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        return stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def process_start_uptime(pid: int) -> float | None:
    """When ``pid`` started, in seconds after this boot of the kernel began (Linux); None
    where unknown.

    With the boot id and the PID this identifies a process exactly, however the clock is
    set: the kernel counts it in ticks since boot, and no clock change moves it. (The
    epoch time below does move: see process_start_time.)
    """
    fields = _proc_stat(pid)
    if fields is None:
        return None
    try:
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch (Linux); None where unknown.

    For people, and for telling a reused PID where no boot id was recorded. Not exact: the
    kernel's boot time (``btime``) is the clock's time now less the time since boot, in
    whole seconds, so it moves with every change of the clock — a second back and forth as
    NTP slews it, the whole step when the clock is set — and this value with it.
    """
    return process_start(pid)[0]


def process_start(pid: int) -> tuple[float | None, float | None]:
    """``pid``'s start as (process_start_time, process_start_uptime), from one read."""
    uptime = process_start_uptime(pid)
    boot = boot_time() if uptime is not None else None
    return (None if boot is None or uptime is None else boot + uptime), uptime


def _boot_id() -> str | None:
    """This boot of the kernel (Linux): a new random id at every boot, the same in every
    container of the host (it is not namespaced)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except (OSError, ValueError):
        return None


def _pid_namespace() -> str | None:
    """This process's PID namespace, e.g. ``pid:[4026531836]`` (Linux). A fork after
    ``unshare(CLONE_NEWPID)`` lands in another one: hence read again after a fork."""
    try:
        return os.readlink("/proc/self/ns/pid") or None
    except OSError:  # no /proc (not Linux, or not mounted)
        return None


def boot_time() -> float | None:
    """When this host's kernel booted, in seconds since the epoch (Linux); None where unknown.

    A run last seen before this moment cannot have a process on this boot of the host."""
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_is_dead(pid: int) -> bool:
    """True when ``pid`` has exited but not yet been waited for (a zombie, Linux)."""
    fields = _proc_stat(pid)
    return fields is not None and bool(fields) and fields[0] in (b"Z", b"X")


def _script() -> tuple[str | None, str | None]:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None, None
    resolved = Path(path).resolve()
    return str(resolved.parent), resolved.name


def command_of(pid: int) -> tuple[str | None, str | None, str | None]:
    """(command line, script folder, script file name) of another process of this host, as
    ``/proc`` shows them: for ``bash ./load.sh`` the script is ``load.sh`` in the folder the
    process started in. None where unknown: no ``/proc``, the process gone, an interactive
    shell, ``sh -c '...'``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None, None, None
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not argv:
        return None, None, None
    script: Path | None = None
    for arg in argv[1:]:
        if arg == "-c":  # the commands come as text: no script file
            break
        if arg.startswith("-") or arg.startswith("+"):  # the shell's own options
            continue
        candidate = Path(cwd, arg)
        if candidate.is_file():
            script = candidate.resolve()
        break
    line = shlex.join(argv)
    if script is None:
        return line, None, None
    return line, str(script.parent), script.name


def _command_line() -> str:
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return shlex.join(str(a) for a in argv)


_cached: ProcessInfo | None = None


def process_info() -> ProcessInfo:
    """This process's facts, cached until the PID changes (fork)."""
    global _cached
    pid = current_pid()
    if _cached is None or _cached.process_id != pid:
        script_path, script_filename = _script()
        started = process_start(pid)
        # Cached only once storable (a warning turned into an error leaves nothing cached).
        _cached = _storable(
            ProcessInfo(
                hostname=socket.gethostname(),
                process_id=pid,
                parent_pid=os.getppid() if hasattr(os, "getppid") else None,
                process_start_time=started[0],
                process_start_uptime=started[1],
                user_name=_user(),
                python_version=sys.version.split()[0],
                command_line=_command_line(),
                script_path=script_path,
                script_filename=script_filename,
                boot_id=_boot_id(),
                pid_namespace=_pid_namespace(),
            )
        )
    return _cached


if sys.platform == "win32":  # pragma: no cover

    def cpu_seconds() -> float:
        """This process's CPU time so far, user and system."""
        return time.process_time()

    def usage() -> tuple[float, float | None]:
        """This process's CPU seconds so far and its peak resident memory in MB (None where
        the platform does not report it)."""
        return time.process_time(), None

else:
    from resource import RUSAGE_SELF, getrusage

    # Linux reports the peak in kilobytes, macOS in bytes.
    _PEAK_UNIT = 1024 * 1024 if sys.platform == "darwin" else 1024

    # Both are asked at every run (its start and its end): the platform is settled here,
    # once, and each is one system call.
    def cpu_seconds() -> float:
        """This process's CPU time so far, user and system: the clock :func:`usage` reads."""
        r = getrusage(RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def usage() -> tuple[float, float | None]:
        """This process's CPU seconds so far and its peak resident memory in MB: one
        system call for both, made at every run's end."""
        r = getrusage(RUSAGE_SELF)
        return r.ru_utime + r.ru_stime, r.ru_maxrss / _PEAK_UNIT


_forked = False


def note_fork() -> None:
    """This process is a forked child (tasker.runtime.recorder's at-fork hook calls this)."""
    global _forked
    _forked = True


_worker: tuple[int, bool] | None = None  # (pid, answer): asked at every run's end


def in_worker_process() -> bool:
    """True in a process another process started to do work for it (a fork, a
    multiprocessing or billiard child), whose end may come without atexit."""
    global _worker
    pid = current_pid()
    if _worker is not None and _worker[0] == pid:
        return _worker[1]
    answer = _forked
    mp = sys.modules.get("multiprocessing")
    if not answer and mp is not None and mp.parent_process() is not None:
        answer = True
    billiard = sys.modules.get("billiard.process")
    parent = getattr(billiard, "parent_process", None)
    if not answer and parent is not None and parent() is not None:
        answer = True
    # Final for this process: a multiprocessing or billiard child has imported its module
    # before any of its own code runs; a fork is a new PID.
    _worker = (pid, answer)
    return answer
