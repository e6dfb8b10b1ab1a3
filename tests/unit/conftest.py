"""Unit tests: tasker's pure parts in this process — ages, configuration (precedence,
discovery, validation, masking), the import layers of the package, the decorators' static
types.

No database server and no process of their own: a unit test never takes the ``db`` or
``child_env`` fixture and starts no subprocess, server or worker. It may use the isolated
environment every test gets (tests/conftest.py: no TASKER_* variables, private XDG folders, a
temporary working directory), ``tmp_path``, ``monkeypatch``, and a SQLite file under
``tmp_path``. Nothing here yet beyond what tests/conftest.py gives.
"""
