"""The per-user directories tasker's files live in by default (XDG on Unix)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_dir() -> Path:
    """Where the default SQLite database lives ($XDG_DATA_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tasker"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tasker"


def user_state_dir() -> Path:
    """Where undelivered events are journaled by default ($XDG_STATE_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tasker" / "state"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tasker"


def user_config_dir() -> Path:
    """Where a per-user configuration file is looked for ($XDG_CONFIG_HOME/tasker)."""
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "tasker"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tasker"
