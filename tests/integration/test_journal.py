"""The journal with real files, real processes and the real databases: no file blocks the
others (damaged, empty and foreign files are quarantined; events the database refuses are set
aside with the reason, the rest replays), text that no database stores round-trips to text
every database stores, a full disk leaves every earlier record readable, and the reaper's
callers replay waiting journals before they reap."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import tasker
from tasker.models import Status
from tasker.runtime import events, journal
from tasker.runtime.recorder import RECORDER
from tests.conftest import ROOT, Backend
from tests.helpers import free_port, new_run, tasker_cli, write_script

BIG = 20 * 1024 * 1024  # beyond MariaDB's default max_allowed_packet (16 MiB)


@contextlib.contextmanager
def _writer_held() -> Iterator[None]:
    """Keep this process's writer from replaying the test's journals on its own first."""
    RECORDER.writer.pause()
    try:
        yield
    finally:
        RECORDER.writer.resume()


def _run_events(run_id: str, stage: str, task: str) -> list[events.Event]:
    """A finished run with a subtask of 10 items: 5 events."""
    now = datetime.now(timezone.utc)
    return [
        (events.START_RUN, run_id, (new_run(run_id, stage, task, start_time=now),)),
        (events.START_SUBTASK, run_id, (1, "s", 10, None, now)),
        (events.INCREMENT_SUBTASK, run_id, (1, 7, now)),
        (events.END_SUBTASK, run_id, (1, 3, {"status": "COMPLETED", "end_time": now}, now)),
        (events.END_RUN, run_id, (Status.COMPLETED, {}, now, None)),
    ]


def _rid(group: int, i: int) -> str:
    return f"00000000-0000-4000-8{group:03d}-{i:012d}"


def _journal(batch: list[events.Event]) -> Path:
    file = journal.JournalFile(tasker.get_config())
    file.write(batch)
    file.close()
    return file.path


def _foreign(name: str, content: bytes) -> Path:
    """A file in the journal folder, named to be replayed before tasker's own files."""
    folder = journal.journal_folder(tasker.get_config())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{0:020d}-{name}.jsonl"
    path.write_bytes(content)
    return path


def _snapshot() -> list[tuple[object, ...]]:
    rows = []
    for run in tasker.get_task_history(limit=None):
        subs = tasker.get_subtask_progress(run.run_id)
        rows.append(
            (
                run.run_id,
                run.status,
                run.overall_progress_message,
                tuple((s.status, s.items_complete, s.items_total) for s in subs),
            )
        )
    return sorted(rows, key=str)


def _mixed_folder() -> dict[str, Path]:
    """Damaged, empty and foreign files first in the folder, then good ones: a file with a
    lone surrogate and a NUL in a message, and one holding an event the database refuses."""
    files = {
        "empty": _foreign("empty", b""),
        "garbage": _foreign("garbage", b"\x00\x17\xff garbage \xfe\n\x9c\x01\n"),
        "foreign": _foreign("foreign", b'{"level": "info", "msg": "some other log"}\n{}\n'),
        "bad line": _foreign(
            "badline",
            b'{"tasker_journal": 1, "journal_id": "x"}\n["nonsense"]\n',
        ),
    }
    files["good"] = _journal([e for i in range(3) for e in _run_events(_rid(1, i), "GOOD", "g")])
    now = datetime.now(timezone.utc)
    odd = _rid(2, 0)
    files["surrogate"] = _journal(
        [
            *_run_events(odd, "ODD", "surrogate")[:-1],
            (events.UPDATE_RUN, odd, ({"overall_progress_message": "caf\udce9 a\x00b"}, now)),
            _run_events(odd, "ODD", "surrogate")[-1],
        ]
    )
    refused = _rid(3, 0)
    whole = _run_events(refused, "REFUSED", "r")
    files["refused"] = _journal(
        [
            *whole[:-1],
            # A count no database column holds (beyond a 64-bit integer): line 6.
            (events.START_SUBTASK, refused, (2, "too many", 2**70, None, now)),
            whole[-1],
        ]
    )
    return files


BAD = ("empty", "garbage", "foreign", "bad line")


def _assert_good_replayed() -> None:
    good = tasker.get_task_history(stage="GOOD", limit=None)
    assert len(good) == 3 and {r.status for r in good} == {Status.COMPLETED}
    for run in good:
        (sub,) = tasker.get_subtask_progress(run.run_id)
        assert (sub.status, sub.items_complete) == ("COMPLETED", 10)
    (odd,) = tasker.get_task_history(stage="ODD")
    # The lone surrogate (a byte 0xE9 of a non-UTF-8 argv) as \xe9, the NUL as U+FFFD.
    assert odd.overall_progress_message == "caf\\xe9 a\ufffdb"
    assert odd.status == Status.COMPLETED
    (refused,) = tasker.get_task_history(stage="REFUSED")
    assert refused.status == Status.COMPLETED
    assert [s.subtask_number for s in tasker.get_subtask_progress(refused.run_id)] == [1]


def test_damaged_files_are_quarantined_and_the_others_replay(
    db: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with _writer_held():
        files = _mixed_folder()
        content = {kind: files[kind].read_bytes() for kind in BAD}
        with caplog.at_level(logging.WARNING, logger="tasker"):
            result = tasker.replay_journal()
    assert (result.files, result.quarantined, result.failed) == (3, 4, 1)
    assert result.events == 15 + 6 + 5
    outcomes = {Path(d.path): d for d in result.details}
    folder = journal.journal_folder(tasker.get_config())
    for kind in BAD:
        detail = outcomes[files[kind]]
        assert detail.outcome == "quarantined" and detail.reason
        assert not files[kind].exists()
        assert detail.moved_to == str(folder / "quarantine" / files[kind].name)
        assert Path(detail.moved_to).read_bytes() == content[kind]  # moved whole
    assert "empty" in (outcomes[files["empty"]].reason or "")
    assert "not a tasker journal" in (outcomes[files["foreign"]].reason or "")
    assert "not a tasker journal" in (outcomes[files["garbage"]].reason or "")
    assert "line 2" in (outcomes[files["bad line"]].reason or "")
    _assert_good_replayed()
    assert journal.pending_files(tasker.get_config()) == []

    # One warning names every quarantined file, where it went and why.
    moved = [r.getMessage() for r in caplog.records if "to quarantine" in r.getMessage()]
    assert len(moved) == 1, moved
    for kind in BAD:
        assert str(folder / "quarantine" / files[kind].name) in moved[0]

    # The refused event is set aside with its reason, and said so once.
    detail = outcomes[files["refused"]]
    assert (detail.outcome, detail.events, detail.refused) == ("replayed", 5, 1)
    rejected = Path(detail.moved_to or "")
    assert rejected == folder / "rejected" / files["refused"].name
    header, row = (json.loads(line) for line in rejected.read_text().splitlines())
    assert header["tasker_rejected"] == 1 and header["journal"] == files["refused"].name
    assert row["line"] == 6 and row["what"].startswith("the start of subtask 2")
    assert row["reason"] and events.decode(row["event"])[2][2] == 2**70
    refusals = [r for r in caplog.records if "could not replay" in r.getMessage()]
    assert len(refusals) == 1 and str(rejected) in refusals[0].getMessage()

    # Replaying again changes nothing: no file waits, the quarantine stays as it is.
    before = _snapshot()
    again = tasker.replay_journal()
    assert (again.files, again.quarantined, again.events, again.details) == (0, 0, 0, [])
    assert _snapshot() == before
    assert sorted(p.name for p in (folder / "quarantine").iterdir()) == sorted(
        files[k].name for k in BAD
    )


def test_tasker_replay_prints_counts_per_file_and_exits_0(
    db: Backend, child_env: dict[str, str]
) -> None:
    with _writer_held():
        files = _mixed_folder()
        kept = files["good"].with_suffix(".copy")
        kept.write_bytes(files["good"].read_bytes())
        out = tasker_cli(child_env, "replay")
    assert out.returncode == 0, out.stderr
    lines = {ln.split(": ", 1)[0]: ln.split(": ", 1)[1] for ln in out.stdout.splitlines()[:-1]}
    assert lines[str(files["good"])] == "replayed 15 events"
    assert lines[str(files["surrogate"])] == "replayed 6 events"
    assert lines[str(files["refused"])].startswith("replayed 5 events, 1 refused (set aside")
    for kind in BAD:
        assert lines[str(files[kind])].startswith("quarantined: ")
        assert "moved to " in lines[str(files[kind])]
    assert out.stdout.splitlines()[-1] == (
        "replayed 3 journal files (26 events written, 1 refused and set aside); "
        "0 already replayed, 0 still being written, 4 quarantined"
    )
    assert out.stderr.count("to quarantine") == 1, out.stderr
    _assert_good_replayed()

    before = _snapshot()
    again = tasker_cli(child_env, "replay")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "replayed 0 journal files (0 events written, 0 refused and set aside); "
        "0 already replayed, 0 still being written, 0 quarantined"
    ]
    assert again.stderr == ""
    copy = tasker_cli(child_env, "replay", str(kept))
    assert copy.returncode == 0, copy.stderr
    assert f"{kept}: already replayed" in copy.stdout
    assert _snapshot() == before


def test_tasker_replay_exits_1_when_the_database_is_away(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    tasker.configure(url=url, console="false", connect_timeout=2)
    path = _journal(_run_events(_rid(4, 0), "AWAY", "a"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(TASKER_DB_URL=url, PYTHONPATH=str(ROOT))
    out = tasker_cli(env, "replay")
    assert out.returncode == 1
    assert out.stderr.startswith("tasker: error:") and "Connection refused" in out.stderr
    assert path.exists()  # it waits for the database
    assert not (path.parent / "quarantine").exists()


def test_an_oversized_value_does_not_block_the_other_events(db: Backend) -> None:
    """24 events and a 20 MB message, journaled as a process would have while the server's
    limit was unknown: on MariaDB beyond max_allowed_packet, where sending it drops the
    connection as an outage would. The replay cuts the message to what the server takes, with
    a warning naming the field, and all 25 events replay; elsewhere it is kept whole."""
    now = datetime.now(timezone.utc)
    batch = [e for i in range(4) for e in _run_events(_rid(5, i), "BIG", f"b{i}")]
    last = _rid(5, 4)
    whole = _run_events(last, "BIG", "huge")
    message = "m" * BIG
    batch += [
        whole[0],
        (events.UPDATE_RUN, last, ({"overall_progress_message": message}, now)),  # line 23
        whole[1],  # the subtask's start, and its end with 3 items
        whole[3],
        whole[4],
    ]
    assert len(batch) == 25
    with _writer_held(), warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        path = _journal(batch)
        result = tasker.replay_journal()
    runs = tasker.get_task_history(stage="BIG", limit=None)
    assert len(runs) == 5 and {r.status for r in runs} == {Status.COMPLETED}
    (huge,) = [r for r in runs if r.run_id == last]
    (detail,) = result.details
    assert (result.files, result.events, result.failed) == (1, 25, 0)
    assert detail.moved_to is None and not (path.parent / "rejected").exists()
    said = [str(w.message) for w in told if issubclass(w.category, tasker.TaskerWarning)]
    if db.name == "mysql":
        packet = int(db.scalar("SELECT @@max_allowed_packet"))
        assert huge.overall_progress_message == "m" * (packet - 65536)
        (warning,) = said
        assert warning.startswith(f"overall_progress_message of run {last} takes 20,971,520")
        assert f"max_allowed_packet of {packet:,} bytes" in warning
    else:
        assert huge.overall_progress_message == message
        assert said == []
    assert not path.exists()
    before = _snapshot()
    assert tasker.replay_journal().details == []
    assert _snapshot() == before


NON_UTF8_ARGV = """
import sys
import time
import tasker

with tasker.task("ARGV", "non-utf8") as run:
    run.update(message="argument " + sys.argv[1])
print("done", flush=True)
"""


def test_a_lone_surrogate_from_argv_reaches_the_journal_and_the_database(
    db: Backend, tmp_path: Path
) -> None:
    """A program given a non-UTF-8 argument (Python holds its byte 0xE9 as U+DCE9) against
    a database that is away: the journal is written, and replays into every backend."""
    script = write_script(tmp_path, NON_UTF8_ARGV)
    journal_dir = tmp_path / "journal"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env.update(
        TASKER_DB_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        TASKER_JOURNAL_DIR=str(journal_dir),
        TASKER_CONSOLE="false",
        PYTHONPATH=str(ROOT),
        PYTHONWARNINGS="ignore",
    )
    out = subprocess.run(
        [sys.executable, os.fsencode(script), b"caf\xe9"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and out.stdout == b"done\n", out.stderr
    assert b"could not record" not in out.stderr, out.stderr
    (path,) = journal_dir.rglob("*.jsonl")
    data = path.read_bytes()
    # Made storable before it was queued: the byte shown as an escape, never a surrogate.
    assert data.isascii() and b"caf\\\\xe9" in data and b"\\udce9" not in data
    result = tasker.replay_journal(path)
    assert (result.files, result.failed, result.quarantined) == (1, 0, 0)
    (run,) = tasker.get_task_history(stage="ARGV")
    assert run.status == Status.COMPLETED
    assert run.overall_progress_message == "argument caf\\xe9"
    assert "caf\\xe9" in (run.command_line or "")


FULL_DISK = """
import errno, json, resource, signal, sys
from datetime import datetime, timezone

import tasker
from tasker.runtime import events, journal
from tests.helpers import new_run

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG
tasker.configure(path=sys.argv[1], journal_dir=sys.argv[2], console="false")
now = datetime.now(timezone.utc)


def run(i):
    rid = f"00000000-0000-4000-8000-{i:012d}"
    return [
        (events.START_RUN, rid, (new_run(rid, "DISK", f"t{i}", start_time=now),)),
        (events.UPDATE_RUN, rid, ({"overall_progress_message": "x" * 3000}, now)),
        (events.END_RUN, rid, (tasker.Status.COMPLETED, {}, now, None)),
    ]


file = journal.JournalFile(tasker.get_config())
file.write(run(1))
size = file.path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4000, resource.RLIM_INFINITY))
try:
    file.write(run(2) + run(3))  # about 9 kB: cut short by the "full disk"
except OSError as exc:
    assert exc.errno == errno.EFBIG, exc
else:
    raise AssertionError("the write did not fail")
assert file.path.stat().st_size == size, "a partial batch was left in the file"
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
file.write(run(2) + run(3))  # room again: the writer writes the same events again
file.close()
print(json.dumps(str(file.path)))
"""


def test_a_full_disk_leaves_every_earlier_record_readable(db: Backend, tmp_path: Path) -> None:
    script = write_script(tmp_path, FULL_DISK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = str(ROOT)
    assert (
        resource.getrlimit(resource.RLIMIT_FSIZE)[1] == resource.RLIM_INFINITY
    )  # the child lowers and raises its soft limit
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "child.db"), str(tmp_path / "j")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    path = Path(json.loads(out.stdout))
    result = tasker.replay_journal(path)
    assert (result.files, result.events, result.failed, result.quarantined) == (1, 9, 0, 0)
    runs = tasker.get_task_history(stage="DISK", limit=None)
    assert len(runs) == 3 and {r.status for r in runs} == {Status.COMPLETED}
    assert {r.overall_progress_message for r in runs} == {"x" * 3000}


def test_the_journal_is_one_ascii_json_line_per_event_each_batch_fsynced(db: Backend) -> None:
    file = journal.JournalFile(tasker.get_config())
    try:
        rid = _rid(6, 0)
        assert file.write(_run_events(rid, "LINES", "l")) == 5
        lines = file.path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and len(lines) == 7  # a header, 5 events, a final newline
        assert all(line.isascii() for line in lines)
        assert [json.loads(line)[0] for line in lines[1:-1]] == [
            events.START_RUN,
            events.START_SUBTASK,
            events.INCREMENT_SUBTASK,
            events.END_SUBTASK,
            events.END_RUN,
        ]
        # Being created, a file never shows under its journal name without its header.
        assert not list(file.path.parent.glob("*.new"))
    finally:
        file.close()


@pytest.mark.parametrize(
    "command",
    [["status"], ["reap"], ["active"], ["watch", "--count", "1", "--interval", "0"]],
    ids=["status", "reap", "active", "watch"],
)
def test_a_run_journaled_completed_is_completed_after_the_reapers_callers(
    db: Backend, child_env: dict[str, str], command: list[str]
) -> None:
    """The run's start reached the database, its end only the journal, and its process is
    gone: replayed first, it is COMPLETED, never FAILED (or COMPLETED) with ProcessLost."""
    from tasker.runtime.capture.process import process_info
    from tasker.runtime.reaper import Host, judge

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    info = process_info()
    rid = _rid(7, 0)
    started = datetime.now(timezone.utc)
    RECORDER.store.start_run(
        new_run(
            rid,
            "JOURNALED",
            "ended in the journal",
            start_time=started,
            hostname=info.hostname,
            process_id=dead.pid,
            boot_id=info.boot_id,
            pid_namespace=info.pid_namespace,
        )
    )
    run = tasker.get_run(rid)
    assert judge(run, datetime.now(timezone.utc), 3600, Host.here()).lost  # reaped otherwise
    with _writer_held():
        _journal([(events.END_RUN, rid, (Status.COMPLETED, {}, datetime.now(timezone.utc), None))])
        out = tasker_cli(child_env, *command)
    assert out.returncode == 0, out.stderr
    ended = tasker.get_run(rid)
    assert (ended.status, ended.error_type, ended.error_message) == (
        Status.COMPLETED,
        None,
        None,
    )
    assert journal.pending_files(tasker.get_config()) == []
    if command == ["reap"]:
        assert "0 lost runs ended FAILED" in out.stdout
    if command == ["status"]:
        (line,) = [ln for ln in out.stdout.splitlines() if "ended in the journal" in ln]
        assert "COMPLETED" in line


def test_a_journal_being_created_is_never_taken_for_an_empty_one(db: Backend) -> None:
    """A file a live process has just made is locked and has its header before a replay can
    see it: it is left alone (busy), never quarantined as empty."""
    file = journal.JournalFile(tasker.get_config())
    try:
        result = tasker.replay_journal()
        assert (result.busy, result.quarantined) == (1, 0)
        assert file.path.exists()
    finally:
        file.close()
    assert not file.path.exists()  # no event ever written: removed


def test_a_file_that_cannot_be_dealt_with_here_stays_for_later(
    db: Backend, child_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """No room for quarantine/ or rejected/ (here: files in their way): the file stays where
    it is, untouched and unreplayed, `tasker replay` says why and exits 1; once there is
    room, it replays."""
    with _writer_held():
        files = _mixed_folder()
        folder = files["good"].parent
        (folder / "quarantine").write_text("in the way")
        (folder / "rejected").write_text("in the way")
        out = tasker_cli(child_env, "replay")
        assert out.returncode == 1, out.stderr
        for kind in (*BAD, "refused"):
            assert f"{files[kind]}: not replayed (left for later): " in out.stdout
            assert files[kind].exists()
        assert tasker.get_task_history(stage="REFUSED") == []  # nothing of it committed
        assert len(tasker.get_task_history(stage="GOOD", limit=None)) == 3
        (folder / "quarantine").unlink()
        (folder / "rejected").unlink()
        with caplog.at_level(logging.WARNING, logger="tasker"):
            result = tasker.replay_journal()
    assert (result.files, result.quarantined, result.failed) == (1, 4, 1)
    _assert_good_replayed()


def test_a_replay_that_meets_a_lock_keeps_the_file_instead_of_setting_events_aside(
    db: Backend,
) -> None:
    """Another session holds the runs table while a journal replays (a crowd creating the
    schema, a migration, a long report): the waits end in lock timeouts, which say nothing of
    the events. None is set aside as refused; the file stays whole and replays, all of it,
    once the lock is gone."""
    if db.name == "sqlite":
        pytest.skip("a table lock of another session: the servers (SQLite locks the file)")
    from sqlalchemy import create_engine, text

    from tests.conftest import _driver_url

    tasker.create_schema()
    tasker.configure(**db.settings, lock_timeout=0.5)
    batch = [e for i in range(3) for e in _run_events(_rid(7, i), "LOCKED", f"l{i}")]
    engine = create_engine(_driver_url(db.settings["url"]))
    try:
        with _writer_held():
            path = _journal(batch)
            with engine.connect() as holder:
                holder.begin()
                if db.name == "mysql":
                    holder.execute(text("LOCK TABLES task_runs WRITE"))
                else:
                    table = db.table("task_runs")
                    holder.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(tasker.DatabaseError):
                    tasker.replay_journal([path])
                if db.name == "mysql":
                    holder.execute(text("UNLOCK TABLES"))
                holder.rollback()
            assert path.exists() and not (path.parent / "rejected").exists()
            result = tasker.replay_journal([path])
    finally:
        engine.dispose()
    assert (result.files, result.events, result.failed) == (1, 15, 0)
    runs = tasker.get_task_history(stage="LOCKED", limit=None)
    assert sorted(r.run_id for r in runs) == [_rid(7, i) for i in range(3)]
    assert {r.status for r in runs} == {Status.COMPLETED}
    assert not path.exists()


def test_an_event_written_alone_that_meets_a_lock_waits_instead_of_being_set_aside(
    db: Backend,
) -> None:
    """A batch the database refused for what it held is written event by event. When one of
    those single writes meets a lock held by another session, the database has not judged
    it: it and every event after it wait, in order, for the writer's next batch — none is
    set aside as refused — and are written once the lock is gone."""
    import sqlite3

    from sqlalchemy import create_engine, text

    from tests.conftest import _driver_url

    tasker.configure(**db.settings, lock_timeout=0.5)
    tasker.create_schema()
    batch = _run_events(_rid(8, 0), "ALONE", "a") + _run_events(_rid(8, 1), "ALONE", "b")
    delivery = RECORDER.writer._delivery
    store = RECORDER.store
    retry = store.retry_seconds
    folder = journal.journal_folder(tasker.get_config())
    engine = None if db.name == "sqlite" else create_engine(_driver_url(db.settings["url"]))
    with _writer_held():
        if engine is None:
            holder: object = sqlite3.connect(db.settings["path"], isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # type: ignore[attr-defined]
        else:
            holder = engine.connect()
            holder.begin()  # type: ignore[attr-defined]
            lock = (
                "LOCK TABLES task_runs WRITE"
                if db.name == "mysql"
                else f"LOCK TABLE {db.table('task_runs')} IN ACCESS EXCLUSIVE MODE"
            )
            holder.execute(text(lock))  # type: ignore[attr-defined]
        started = time.monotonic()
        try:
            delivery._one_by_one(store, batch, None)
        finally:
            waited = time.monotonic() - started
            if engine is None:
                holder.execute("ROLLBACK")  # type: ignore[attr-defined]
            holder.close()  # type: ignore[attr-defined]
            if engine is not None:
                engine.dispose()
        assert [e for e, _ in delivery.parked] == batch
        assert not (folder / "rejected").exists()
        # One attempt that waited out the lock timeout (0.5 s), not the store's minute of
        # retries (retry_seconds) for a busy database.
        assert retry >= 30.0 and store.retry_seconds == retry
        assert waited < 10.0, f"the writer was held {waited:.1f} s by one locked event"
        delivery._one_by_one(store, delivery.retry_parked(), None)
        assert delivery.parked == []
    runs = tasker.get_task_history(stage="ALONE", limit=None)
    assert sorted(r.run_id for r in runs) == [_rid(8, 0), _rid(8, 1)]
    assert {r.status for r in runs} == {Status.COMPLETED}
    assert not (folder / "rejected").exists()


def test_a_save_and_an_exit_close_at_once_lose_no_event(db: Backend) -> None:
    # The writer thread journals what a crowded server did not take while the exiting thread
    # (abandon()) journals and closes the same file: a save that met the other's close wrote
    # to a closed file ("'NoneType' object cannot be interpreted as an integer") and its
    # events were only in memory, lost with the process.
    import threading

    from tasker.runtime.counters import WriterStats
    from tasker.runtime.spill import Spill

    spill = Spill(tasker.get_config, WriterStats())
    failures: list[BaseException] = []
    ids = [_rid(42, i) for i in range(300)]

    def saving() -> None:
        for run_id in ids:
            try:
                spill.save(_run_events(run_id, "RACE", run_id[-4:]))
            except BaseException as exc:  # what the writer would report
                failures.append(exc)

    saver = threading.Thread(target=saving)
    with _writer_held():
        saver.start()
        deadline = time.monotonic() + 60
        while saver.is_alive() and time.monotonic() < deadline:
            spill.close_at_exit(0)
        saver.join(timeout=60)
        spill.close()
        assert failures == [] and not saver.is_alive()
        replayed = tasker.replay_journal()
    assert (replayed.failed, replayed.quarantined) == (0, 0)
    runs = tasker.get_task_history(stage="RACE", limit=None)
    assert sorted(r.run_id for r in runs) == ids
    assert {r.status for r in runs} == {"COMPLETED"}


def _items(run_id: str) -> list[tuple[str, int | None]]:
    return [(s.status, s.items_complete) for s in tasker.get_subtask_progress(run_id)]


def test_a_batch_in_doubt_is_replayed_only_when_it_was_not_written(db: Backend) -> None:
    """A journal marks a batch whose write may have committed unseen (the answer to its
    COMMIT lost). Replayed, such a batch is asked about first: written already, none of it
    goes again — its progress would count twice; not written, all of it goes. Batches that
    are not marked replay as always."""
    written, unmarked, lost = _rid(7, 1), _rid(7, 2), _rid(7, 3)
    first = _run_events(written, "DOUBT", "written")
    with _writer_held():
        assert tasker.replay_journal([_journal(first)]).events == 5  # in the database now
        file = journal.JournalFile(tasker.get_config())
        batch = (
            first + _run_events(unmarked, "DOUBT", "unmarked") + _run_events(lost, "DOUBT", "lost")
        )
        file.write(batch, [0] * 5 + [None] * 5 + [1] * 5)
        file.close()
        text = file.path.read_text(encoding="ascii").splitlines()
        assert [json.loads(text[i]) for i in (1, 12)] == [{journal.DOUBT: 5}] * 2, text
        result = tasker.replay_journal([file.path])
    assert (result.events, result.recorded, result.failed) == (10, 5, 0), result
    (detail,) = result.details
    assert (detail.events, detail.recorded, detail.refused) == (10, 5, 0), detail
    for run_id in (written, unmarked, lost):
        assert tasker.get_run(run_id).status == Status.COMPLETED
        assert _items(run_id) == [("COMPLETED", 10)], run_id  # not 17: nothing counted twice


def test_events_found_in_the_database_without_a_mark_are_not_refused(db: Backend) -> None:
    """A journal that does not mark its batch in doubt (written by a tasker before the
    marks, or by one that never learned the write was in doubt): each event the database
    refuses for being there already is recognised by its trace — the run's start, the
    subtask's start and end, the run's end — and neither reported nor set aside. A progress
    increment is not refused, and with no mark to go by it is added again."""
    rid, other = _rid(8, 1), _rid(8, 2)
    first = _run_events(rid, "AGAIN", "written")
    with _writer_held():
        tasker.replay_journal([_journal(first)])
        result = tasker.replay_journal([_journal(first + _run_events(other, "AGAIN", "new"))])
    assert (result.events, result.recorded, result.failed) == (6, 4, 0), result
    assert not list(journal.journal_folder(tasker.get_config()).rglob("rejected/*"))
    assert _items(rid) == [("COMPLETED", 17)]  # the increment of 7, again
    assert _items(other) == [("COMPLETED", 10)]
    # A real refusal is still one: a second end of the run, with another status and time.
    again = (events.END_RUN, rid, (Status.FAILED, {}, datetime.now(timezone.utc), None))
    with _writer_held():
        refused = tasker.replay_journal([_journal([again])])
    assert (refused.events, refused.recorded, refused.failed) == (0, 0, 1), refused
    assert tasker.get_run(rid).status == Status.COMPLETED
