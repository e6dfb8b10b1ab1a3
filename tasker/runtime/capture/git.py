"""Git commit, branch and dirty flag of the repository holding a script, read from ``.git``
directly: no subprocess, and cached per repository for the life of the process."""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
from pathlib import Path

from tasker.runtime.storable import fitted
from tasker.validate import WIDTHS

__all__ = ["GitInfo", "git_info"]


@dataclasses.dataclass(frozen=True)
class GitInfo:
    commit: str | None
    branch: str | None
    dirty: bool | None


def _git_dir(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[7:].strip())
                return target if target.is_absolute() else (directory / target).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    if common.is_file():
        return (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    for base in (git_dir, _common_dir(git_dir)):
        path = base / ref
        if path.is_file():
            return path.read_text(encoding="utf-8").strip() or None
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.endswith(" " + ref) and not line.startswith(("#", "^")):
                    return line.split(" ", 1)[0]
    return None


def _dirty(git_dir: Path, work_tree: Path) -> bool | None:
    """True when a tracked file's size or modification time differs from the index (what
    ``git status`` checks first); None when the index cannot be read."""
    try:
        data = (git_dir / "index").read_bytes()
    except OSError:
        return None
    if data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None  # version 4 compresses paths; not worth parsing here
    pos = 12
    for _ in range(count):
        (_cs, _cn, m_s, m_n, _dev, _ino, mode, _uid, _gid, size) = struct.unpack(
            ">10I", data[pos : pos + 40]
        )
        flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
        header = 62
        if version == 3 and flags & 0x4000:
            header += 2
        end = data.index(b"\0", pos + header)
        rel = data[pos + header : end].decode("utf-8", errors="surrogateescape")
        entry_len = end - pos + 1
        pos += (entry_len + 7) & ~7
        if mode >> 12 == 0o16:  # a submodule (gitlink)
            continue
        try:
            st = os.lstat(work_tree / rel)
        except OSError:
            return True  # deleted
        if st.st_size & 0xFFFFFFFF != size or int(st.st_mtime) != m_s:
            return True
        if m_n and st.st_mtime_ns % 1_000_000_000 != m_n:
            return True
    return False


@functools.lru_cache(maxsize=32)
def _info_for(git_dir: Path) -> GitInfo:
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return GitInfo(None, None, None)
    branch = None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _resolve_ref(git_dir, ref)
    else:
        commit = head or None
    work_tree = git_dir.parent
    try:
        dirty = _dirty(git_dir, work_tree)
    except (OSError, ValueError, struct.error):
        dirty = None
    # Made storable once per repository (a branch name may hold anything but a NUL).
    if commit is not None:
        commit = fitted(commit, "git_commit", WIDTHS["git_commit"])
    if branch is not None:
        branch = fitted(branch, "git_branch", WIDTHS["git_branch"])
    return GitInfo(commit, branch, dirty)


def git_info(path: str | os.PathLike[str] | None) -> GitInfo:
    """Git facts for the repository holding ``path`` (a file or folder); all None outside one.

    Read once per folder per process: a run start must not walk the file system.
    """
    if path is None:
        return GitInfo(None, None, None)
    return _git_info_for_path(os.fspath(path))


@functools.lru_cache(maxsize=256)
def _git_info_for_path(path: str) -> GitInfo:
    start = Path(path)
    if not start.is_dir():
        start = start.parent
    git_dir = _git_dir(start.resolve())
    if git_dir is None:
        return GitInfo(None, None, None)
    return _info_for(git_dir)
