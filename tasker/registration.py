"""Turning registrations (dicts, DataFrame rows, YAML and CSV files) into TaskSpecs.

YAML files may list tasks flat or grouped by stage::

    stages:
      - name: PREREQ
        order: 1
        tasks:
          - {name: Install System Dependencies, type: sh}
      - name: STATIC
        tasks:
          - {name: Build Database, type: python, script_path: scripts/build_db.py}

    tasks:                      # or flat, one mapping per task
      - {stage: DAILY, name: Refresh, type: sh}

CSV files have a header row with the same column names as the flat form.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tasker import validate
from tasker.errors import RegistrationError
from tasker.models import TaskSpec

__all__ = ["TASK_FIELDS", "load_task_file", "spec_from_mapping", "specs_from"]

# Accepted keys of one task, with the aliases the seed's R package used.
TASK_FIELDS = (
    "stage",
    "name",
    "type",
    "stage_order",
    "task_order",
    "description",
    "stage_description",
    "script_path",
    "script_filename",
    "log_path",
    "log_filename",
)
_ALIASES = {"task": "name", "task_name": "name", "stage_name": "stage", "task_type": "type"}


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value != value:  # NaN from a DataFrame
        return None
    if isinstance(value, bool):
        raise RegistrationError(f"{what} must be a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RegistrationError(f"{what} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise RegistrationError(f"{what} must be a whole number, got {value!r}")
    return int(number)


def _text_or_none(value: Any, what: str) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RegistrationError(f"{what} must be text, got {value!r}")
    return value if value.strip() else None


def spec_from_mapping(row: Mapping[str, Any], where: str) -> TaskSpec:
    """One task from a mapping; ``where`` says where it came from, for errors."""
    values: dict[str, Any] = {}
    for raw_key, value in row.items():
        key = _ALIASES.get(str(raw_key).strip(), str(raw_key).strip())
        if key not in TASK_FIELDS:
            raise RegistrationError(
                f"{where}: unknown field {raw_key!r}: expected some of {', '.join(TASK_FIELDS)}"
            )
        values[key] = value
    for required in ("stage", "name"):
        if _text_or_none(values.get(required), f"{where}: {required}") is None:
            raise RegistrationError(f"{where}: the task's {required} is missing")
    try:
        script_path, script_filename = validate.split_path(
            _text_or_none(values.get("script_path"), f"{where}: script_path"),
            _text_or_none(values.get("script_filename"), f"{where}: script_filename"),
        )
        log_path, log_filename = validate.split_path(
            _text_or_none(values.get("log_path"), f"{where}: log_path"),
            _text_or_none(values.get("log_filename"), f"{where}: log_filename"),
        )

        def storable(value: str | None, field: str) -> str | None:
            # Escaped, then cut to its column (a warning each): the database refuses neither.
            return validate.optional_text(value, f"{where}: {field}", validate.WIDTHS.get(field))

        return TaskSpec(
            stage=validate.name(
                str(values["stage"]).strip(), f"{where}: stage", validate.STAGE_NAME_MAX
            ),
            name=validate.name(
                str(values["name"]).strip(), f"{where}: name", validate.TASK_NAME_MAX
            ),
            task_type=storable(_text_or_none(values.get("type"), f"{where}: type"), "task_type"),
            stage_order=_int_or_none(values.get("stage_order"), f"{where}: stage_order"),
            task_order=_int_or_none(values.get("task_order"), f"{where}: task_order"),
            description=storable(
                _text_or_none(values.get("description"), f"{where}: description"), "description"
            ),
            stage_description=storable(
                _text_or_none(values.get("stage_description"), f"{where}: stage_description"),
                "stage_description",
            ),
            script_path=storable(script_path, "script_path"),
            script_filename=storable(script_filename, "script_filename"),
            log_path=storable(log_path, "log_path"),
            log_filename=storable(log_filename, "log_filename"),
        )
    except RegistrationError:
        raise
    except ValueError as exc:  # a ValidationError from validate.*
        raise RegistrationError(str(exc)) from None


def _yaml_specs(path: Path) -> list[TaskSpec]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise RegistrationError(f"{path} is not valid YAML ({where}): {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RegistrationError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not set(data) <= {"stages", "tasks"} or not data:
        raise RegistrationError(
            f"{path}: expected a mapping with 'stages' (each with its 'tasks') and/or 'tasks', "
            "or a list of tasks"
        )
    specs: list[TaskSpec] = []
    for i, stage in enumerate(data.get("stages") or [], start=1):
        where = f"{path}: stages[{i}]"
        if not isinstance(stage, dict):
            raise RegistrationError(f"{where}: expected a mapping with name, order and tasks")
        extra = set(stage) - {"name", "order", "stage_order", "description", "tasks"}
        if extra:
            raise RegistrationError(
                f"{where}: unknown field {sorted(extra)[0]!r}: expected name, order, "
                "description, tasks"
            )
        stage_name = stage.get("name")
        if not isinstance(stage_name, str) or not stage_name.strip():
            raise RegistrationError(f"{where}: the stage's name is missing")
        order = stage.get("order", stage.get("stage_order"))
        tasks = stage.get("tasks") or []
        if not isinstance(tasks, list):
            raise RegistrationError(f"{where}: tasks must be a list")
        for j, task in enumerate(tasks, start=1):
            if not isinstance(task, dict):
                raise RegistrationError(
                    f"{where}.tasks[{j}]: expected a mapping with name and type"
                )
            row = {"stage": stage_name, "stage_order": order, **task}
            if stage.get("description") is not None:
                row.setdefault("stage_description", stage["description"])
            specs.append(spec_from_mapping(row, f"{where}.tasks[{j}]"))
    tasks = data.get("tasks") or []
    if not isinstance(tasks, list):
        raise RegistrationError(f"{path}: tasks must be a list")
    for i, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            raise RegistrationError(f"{path}: tasks[{i}]: expected a mapping with stage and name")
        specs.append(spec_from_mapping(task, f"{path}: tasks[{i}]"))
    return specs


def _csv_specs(path: Path) -> list[TaskSpec]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise RegistrationError(
                f"{path}: empty CSV file: expected a header row with stage,name"
            )
        specs = []
        for row in reader:
            if None in row:
                raise RegistrationError(
                    f"{path}: line {reader.line_num}: more values than header columns"
                )
            specs.append(spec_from_mapping(row, f"{path}: line {reader.line_num}"))
    return specs


def load_task_file(path: str | os.PathLike[str]) -> list[TaskSpec]:
    """Tasks from a ``.yml``/``.yaml`` or ``.csv`` file."""
    p = Path(path)
    if not p.is_file():
        raise RegistrationError(f"task file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix in (".yml", ".yaml"):
        return _yaml_specs(p)
    if suffix == ".csv":
        return _csv_specs(p)
    raise RegistrationError(f"task file {p}: expected a .yml, .yaml or .csv file")


def specs_from(tasks: Any) -> list[TaskSpec]:
    """Tasks from a list of dicts, a pandas DataFrame, or a YAML/CSV file path."""
    if isinstance(tasks, (str, os.PathLike)):
        return load_task_file(tasks)
    if hasattr(tasks, "to_dict") and hasattr(tasks, "columns"):  # a pandas DataFrame
        rows: Iterable[Any] = tasks.to_dict(orient="records")
        label = "DataFrame row"
    elif isinstance(tasks, Iterable) and not isinstance(tasks, Mapping):
        rows = tasks
        label = "task"
    else:
        raise RegistrationError(
            f"expected a list of dicts, a pandas DataFrame or a YAML/CSV file path, got "
            f"{type(tasks).__name__}"
        )
    specs = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise RegistrationError(f"{label} {i}: expected a dict, got {type(row).__name__}")
        specs.append(spec_from_mapping(row, f"{label} {i}"))
    return specs
