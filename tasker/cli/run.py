"""``tasker run -- COMMAND``: any command as a tracked task.

The command's output passes through byte for byte (its standard output is not even touched
unless ``--log`` asks for a copy); its standard error is relayed unchanged while its last
lines are kept for the run's error detail. The run id is in the command's environment, so a
Python child (or ``tasker subtask ...`` in a shell script) reports into this run.

Exit status 0 → COMPLETED; any other → FAILED with the status and the tail of stderr. SIGTERM
and SIGHUP sent to ``tasker run`` are passed to the command and the run ends CANCELLED; so
does SIGINT, which a terminal already delivers to the command itself (then it is not sent a
second time). ``tasker run`` exits with the command's status (128 + N for a signal N).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from types import FrameType
from typing import IO, Any

__all__ = ["run_command"]

TAIL_LINES = 40


def _relay(source: IO[bytes], sinks: list[IO[bytes]], tail: deque[bytes] | None) -> None:
    """Copy ``source`` to every sink as it comes (unbuffered), keeping its last lines."""
    while True:
        chunk = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
        if not chunk:
            break
        for sink in sinks:
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):  # a closed pipe downstream: keep draining
                pass
        if tail is not None:
            tail.extend(chunk.splitlines(keepends=True))
    source.close()


def run_command(
    argv: list[str], stage: str, name: str | None, log_file: str | None, quiet: bool
) -> int:
    import tasker
    from tasker.runtime import context
    from tasker.runtime.threads import started_without_signals

    if not argv:
        raise tasker.ValidationError("tasker run needs a command after --")
    task_name = name or os.path.basename(argv[0])
    log = open(log_file, "ab") if log_file else None  # noqa: SIM115 - closed below
    log_path = os.path.abspath(log_file) if log_file else None
    try:
        program = shutil.which(argv[0]) or argv[0]
        run_id = tasker.task_start(
            stage,
            task_name,
            task_type="sh",
            log_path=log_path,
            quiet=quiet,
            script_path=os.path.abspath(program),
        )
        env = dict(os.environ)
        env[context.RUN_ID_ENV] = run_id
        received: list[int] = []
        waiting: list[int] = []  # arrived before the command started: passed on once it has
        started: list[subprocess.Popen[bytes]] = []
        from_terminal = sys.stdin is not None and sys.stdin.isatty()

        def forward(signum: int, frame: FrameType | None) -> None:
            received.append(signum)
            if signum == signal.SIGINT and from_terminal:
                return  # the terminal sent it to the whole foreground group already
            if not started:
                waiting.append(signum)
                return
            with contextlib.suppress(OSError):  # it has just exited
                started[0].send_signal(signum)

        # Installed before the command starts, so that no signal falls between the two into
        # tasker's own SIGTERM handling (which would leave the command running).
        previous = {
            sig: signal.signal(sig, forward)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdout=subprocess.PIPE if log else None,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                tasker.task_fail(
                    f"cannot run {argv[0]}: {exc.strerror or exc}",
                    error_type=type(exc).__name__,
                    run_id=run_id,
                    quiet=quiet,
                )
                return 127 if isinstance(exc, FileNotFoundError) else 126
            started.append(proc)
            for signum in waiting:
                with contextlib.suppress(OSError):
                    proc.send_signal(signum)
            tail: deque[bytes] = deque(maxlen=TAIL_LINES)
            sinks_err: list[IO[bytes]] = [sys.stderr.buffer] + ([log] if log else [])
            threads = [
                threading.Thread(target=_relay, args=(proc.stderr, sinks_err, tail), daemon=True)
            ]
            if log is not None and proc.stdout is not None:
                threads.append(
                    threading.Thread(
                        target=_relay,
                        args=(proc.stdout, [sys.stdout.buffer, log], None),
                        daemon=True,
                    )
                )
            for thread in threads:
                # Not these threads: a signal they took would not wake the wait below.
                started_without_signals(thread)
            code = proc.wait()
            for thread in threads:
                thread.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return _record(run_id, argv, code, received, b"".join(tail), quiet, log_path)
    finally:
        if log is not None:
            log.close()


def _record(
    run_id: str,
    argv: list[str],
    code: int,
    received: list[int],
    tail: bytes,
    quiet: bool,
    log_path: str | None,
) -> int:
    import tasker
    from tasker.cli.common import log_tail_of

    detail = tail.decode("utf-8", errors="replace") or None
    command = " ".join(argv)
    # The --log copy of the output (written and flushed chunk by chunk) ends with the run;
    # a command that printed nothing leaves nothing to ship, which is not worth a word.
    shipped = log_tail_of(log_path, say=False)
    values: dict[str, Any] = {"run_id": run_id, "quiet": quiet, "_log_tail": shipped}
    if code == 0 and not received:
        tasker.task_complete(**values)
        return 0
    if code < 0 or received:
        signum = -code if code < 0 else received[-1]
        name = signal.Signals(signum).name
        tasker.task_update(
            "CANCELLED",
            error_message=f"{command} ended by {name}",
            error_detail=detail,
            **values,
        )
        return 128 + signum if code < 0 else code
    tasker.task_fail(
        f"{command} exited with status {code}",
        error_type="ExitStatus",
        error_detail=detail,
        exit_code=code,
        **values,
    )
    return code
