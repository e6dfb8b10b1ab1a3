"""Configuration: precedence, discovery, expansion, validation and password masking."""

from __future__ import annotations

from pathlib import Path

import pytest

import tasker
from tasker.config import find_config_file, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_zero_configuration_is_sqlite_in_the_user_data_directory(tmp_path: Path) -> None:
    config = tasker.get_config()
    assert config.driver == "sqlite"
    assert config.path == str(tmp_path / "home" / "data" / "tasker" / "tasker.db")
    assert config.sources["path"] == "default"
    tasker.register_task("S", "T")  # creates the file and the schema on first use
    assert Path(config.path).is_file()


def test_precedence_arguments_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        Path.cwd() / ".tasker.yml",
        "database:\n  driver: postgresql\n  host: filehost\n  port: 5433\n  dbname: filedb\n"
        "  user: fileuser\ntracking:\n  environment: staging\n  stale_after: 30\n",
    )
    config = load_config()
    assert (config.host, config.port, config.dbname, config.user) == (
        "filehost",
        5433,
        "filedb",
        "fileuser",
    )
    assert config.sources["host"].startswith("file ") and "database.host" in config.sources["host"]
    assert config.stale_after == 30.0 and config.environment == "staging"
    monkeypatch.setenv("TASKER_DB_HOST", "envhost")
    monkeypatch.setenv("TASKER_DB_PORT", "6000")
    config = load_config()
    assert (config.host, config.port, config.dbname) == ("envhost", 6000, "filedb")
    assert config.sources["host"] == "environment variable TASKER_DB_HOST"
    config = load_config({"host": "arghost", "environment": "prod"})
    assert (config.host, config.port, config.environment) == ("arghost", 6000, "prod")
    assert config.sources["host"] == "configure()"
    assert config.heartbeat_interval == 10.0 and config.sources["heartbeat_interval"] == "default"
    assert config.schema == "tasker"  # PostgreSQL's default schema


def test_config_file_is_found_walking_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    cfg = write(root / ".tasker.yml", "database:\n  path: ${HOME_DB:-/tmp/x.db}\n")
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config_file() == cfg
    config = load_config()
    assert config.config_file == str(cfg)
    assert config.path == "/tmp/x.db"
    monkeypatch.setenv("HOME_DB", "/data/pipeline.db")
    assert load_config().path == "/data/pipeline.db"


def test_user_config_directory_is_the_fallback(tmp_path: Path) -> None:
    cfg = write(tmp_path / "home" / "config" / "tasker" / "tasker.yml", "tracking:\n  quiet: yes\n")
    assert find_config_file() == cfg
    assert load_config().quiet is True


def test_tasker_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "elsewhere.yml", "tracking:\n  default_stage: NIGHTLY\n")
    monkeypatch.setenv("TASKER_CONFIG", str(cfg))
    assert load_config().default_stage == "NIGHTLY"
    monkeypatch.setenv("TASKER_CONFIG", str(tmp_path / "missing.yml"))
    with pytest.raises(tasker.ConfigError, match=r"TASKER_CONFIG names .*missing.yml"):
        load_config()


def test_variable_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGUSER_X", "alice")
    monkeypatch.delenv("UNSET_X", raising=False)
    write(
        Path.cwd() / ".tasker.yml",
        "database:\n  driver: postgresql\n  dbname: ${UNSET_X:-geodb}\n  user: ${PGUSER_X}\n"
        "  host: h${UNSET_X}\n",
    )
    config = load_config()
    assert (config.dbname, config.user, config.host) == ("geodb", "alice", "h")


def test_url_and_split_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKER_DB_URL", "postgresql://bob:s3cret@db.example:5544/pipes")
    config = load_config()
    assert (config.driver, config.host, config.port, config.dbname, config.user) == (
        "postgresql",
        "db.example",
        5544,
        "pipes",
        "bob",
    )
    assert config.sqlalchemy_driver == "postgresql+psycopg"
    # A part given with higher precedence wins over the URL's.
    assert load_config({"dbname": "other"}).dbname == "other"
    monkeypatch.setenv("TASKER_DB_URL", "mariadb://root@127.0.0.1/test")
    config = load_config()
    assert (config.driver, config.sqlalchemy_driver, config.port) == (
        "mysql",
        "mysql+pymysql",
        3306,
    )
    monkeypatch.setenv("TASKER_DB_URL", "sqlite:////var/lib/tasker.db")
    assert load_config().path == "/var/lib/tasker.db"


def test_password_is_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "pa55-w0rd-xyz"
    monkeypatch.setenv("TASKER_DB_PASSWORD", secret)
    config = load_config({"driver": "postgresql", "dbname": "x", "host": "localhost", "user": "u"})
    assert config.password == secret
    assert secret not in repr(config)
    assert secret not in str(config)
    assert secret not in config.url and "***" in config.url
    assert all(secret not in value for _, value, _ in config.describe())
    with pytest.raises(tasker.ConfigError) as info:
        load_config({"url": f"postgresql://u:{secret}@host:notaport/db"})
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "pattern"),
    [
        ("database:\n  hots: x\n", r"unknown key database.hots: expected one of url, driver"),
        ("databse:\n  host: x\n", r"unknown section 'databse'"),
        ("database:\n  driver: oracle\n", r"unknown driver 'oracle': expected one of sqlite"),
        ("database:\n  port: 99999\n", r"database.port.*port number from 1 to 65535"),
        ("tracking:\n  stale_after: -5\n", r"tracking.stale_after.*positive number"),
        ("tracking:\n  quiet: maybe\n", r"tracking.quiet.*true or false"),
        ("tracking:\n  console: loud\n", r"auto, true, false"),
        ("database: [1, 2]\n", r"section 'database' must be a mapping"),
        ("- a\n- b\n", r"expected a mapping"),
        ("database:\n  host: [unclosed\n", r"not valid YAML \(line 3, column 1\)"),
    ],
)
def test_bad_config_files_name_the_file_and_the_key(yaml_text: str, pattern: str) -> None:
    cfg = write(Path.cwd() / ".tasker.yml", yaml_text)
    with pytest.raises(tasker.ConfigError, match=pattern) as info:
        load_config()
    assert str(cfg) in str(info.value)


@pytest.mark.parametrize(
    ("settings", "env", "pattern"),
    [
        ({"colour": "red"}, {}, r"unknown configuration key 'colour'"),
        ({"driver": "mssql"}, {}, r"unknown driver 'mssql'"),
        ({}, {"TASKER_DB_PORT": "eighty"}, r"TASKER_DB_PORT: expected a port number"),
        ({}, {"TASKER_STRICT": "perhaps"}, r"TASKER_STRICT: expected true or false"),
        ({"driver": "postgresql"}, {}, r"database name is not set"),
        ({"url": "not a url"}, {}, r"is not a database URL"),
        ({"max_queued": 0}, {}, r"max_queued: expected a whole number above 0, got 0"),
        ({}, {"TASKER_MAX_QUEUED": "lots"}, r"TASKER_MAX_QUEUED: expected a whole number"),
        ({}, {"TASKER_HEARTBEAT_INTERVAL": "0"}, r"TASKER_HEARTBEAT_INTERVAL: expected a positive"),
        ({"stale_after": "soon"}, {}, r"stale_after: expected a positive number of seconds"),
        ({"log_tail_bytes": -1}, {}, r"log_tail_bytes: expected a whole number of bytes from 0"),
        ({}, {"TASKER_LOG_TAIL_BYTES": "2097152"}, r"TASKER_LOG_TAIL_BYTES: .* to 1048576"),
        ({}, {"TASKER_LOG_TAIL_BYTES": "16k"}, r"TASKER_LOG_TAIL_BYTES: expected a whole"),
        ({"connection_linger": -1}, {}, r"connection_linger: expected a number of seconds from 0"),
        ({}, {"TASKER_CONNECTION_LINGER": "later"}, r"TASKER_CONNECTION_LINGER: expected a"),
        ({"pooler": "pgcat"}, {}, r"pooler: expected one of none, session, transaction"),
        ({"pooler": "statement"}, {}, r"statement pooling cannot carry tasker's transactions"),
        (
            {"pooler": "transaction"},
            {"TASKER_DB_URL": "mysql://u@h/d"},
            r"pooler \(from configure\(\)\): transaction pooling is for PostgreSQL .* is mysql",
        ),
        (
            {"schema": "bad-name; drop"},
            {"TASKER_DB_DRIVER": "postgresql", "TASKER_DB_NAME": "x"},
            "invalid schema name",
        ),
    ],
)
def test_bad_settings_and_environment_values(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, object], env: dict[str, str], pattern: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(tasker.ConfigError, match=pattern):
        tasker.configure(**settings)


def test_configure_replaces_previous_settings(tmp_path: Path) -> None:
    tasker.configure(path=str(tmp_path / "a.db"), environment="one")
    assert tasker.get_config().environment == "one"
    tasker.configure(path=str(tmp_path / "b.db"))
    config = tasker.get_config()
    assert config.environment is None and config.path == str(tmp_path / "b.db")


def test_a_rejected_configure_keeps_the_working_configuration(tmp_path: Path) -> None:
    tasker.configure(path=str(tmp_path / "a.db"), console="false")
    tasker.task_start("S", "T")
    with pytest.raises(tasker.ConfigError):
        tasker.configure(port="x", driver="postgresql", dbname="d")
    assert tasker.get_config().path == str(tmp_path / "a.db")
    assert len(tasker.get_active_tasks()) == 1


def test_missing_driver_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pymysql", None)
    tasker.configure(url="mysql://root@127.0.0.1:1/x", console="false")
    with pytest.raises(
        tasker.ConfigError,
        match=r"pip install PyMySQL \(or, in a clone of tasker, pip install '\.\[mysql\]'\)",
    ):
        tasker.create_schema()


def test_unreachable_database_names_host_port_user_not_password() -> None:
    secret = "hunter2-very-secret"
    tasker.configure(url=f"postgresql://tracker:{secret}@127.0.0.1:1/pipes", console="false")
    with pytest.raises(tasker.DatabaseError) as info:
        tasker.create_schema()
    message = str(info.value)
    assert "127.0.0.1:1" in message and "'tracker'" in message and "'pipes'" in message
    assert secret not in message


def test_log_tail_bytes_defaults_to_16_kib_and_is_read_from_file_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_config().log_tail_bytes == 16 * 1024
    write(Path.cwd() / ".tasker.yml", "tracking:\n  log_tail_bytes: 0\n")
    config = load_config()
    assert (
        config.log_tail_bytes == 0 and "tracking.log_tail_bytes" in config.sources["log_tail_bytes"]
    )
    monkeypatch.setenv("TASKER_LOG_TAIL_BYTES", "4096")
    assert load_config().log_tail_bytes == 4096


def test_connection_linger_and_pooler_defaults_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config()
    assert (config.connection_linger, config.pooler) == (0.25, "none")
    write(
        Path.cwd() / ".tasker.yml",
        "database:\n  url: postgresql://u@h/d\n  pooler: Transaction\n"
        "tracking:\n  connection_linger: 0\n",
    )
    config = load_config()
    assert (config.connection_linger, config.pooler) == (0.0, "transaction")
    assert "database.pooler" in config.sources["pooler"]
    monkeypatch.setenv("TASKER_CONNECTION_LINGER", "0.5")
    monkeypatch.setenv("TASKER_DB_POOLER", "session")
    config = load_config()
    assert (config.connection_linger, config.pooler) == (0.5, "session")
