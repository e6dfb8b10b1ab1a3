"""Configuration: explicit arguments > environment variables > YAML file > defaults.

The result is one frozen :class:`Config`. It remembers where every value came from
(``Config.sources``) so that ``get_config()`` and ``tasker config`` can explain it, and it
never shows the database password: ``repr``, ``url`` and every error message mask it, through
:func:`mask_url`, which masks a URL of any shape (well-formed or not).

The keys and their parsers are in :mod:`tasker.config.keys`, the resolution in
:mod:`tasker.config.loading`, URL parsing and masking in :mod:`tasker.config.urls`.
"""

from __future__ import annotations

from tasker.config.dirs import user_config_dir, user_data_dir, user_state_dir
from tasker.config.keys import (
    CONFIG_FILENAME,
    CONSOLE_MODES,
    DEFAULT_PG_SCHEMA,
    DRIVERS,
    MAX_TIMEOUT,
    SQLALCHEMY_DRIVERS,
)
from tasker.config.loading import expand_vars, find_config_file, load_config
from tasker.config.settings import Config
from tasker.config.urls import mask_url

__all__ = [
    "CONFIG_FILENAME",
    "CONSOLE_MODES",
    "DEFAULT_PG_SCHEMA",
    "DRIVERS",
    "MAX_TIMEOUT",
    "SQLALCHEMY_DRIVERS",
    "Config",
    "expand_vars",
    "find_config_file",
    "load_config",
    "mask_url",
    "user_config_dir",
    "user_data_dir",
    "user_state_dir",
]
