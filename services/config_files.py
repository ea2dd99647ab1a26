"""Settings files named on the command line (``train --config``, ``convert --mapping``,
``backtest --train-config``): read and validated into their pydantic model, with one message
that names the option, the file and the field at fault instead of a traceback."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A settings file (or an option over it) that cannot be used; the message says why."""


class OptionError(ValueError):
    """Command-line options that cannot be used as given or together; the message names them.
    The command line prints it as a usage error, not a traceback."""


def read_json_object(path: str | Path, option: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``option`` (e.g. ``"--config"``) names it in errors."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{option} {path}: cannot read it: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"{option} {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{option} {path}: expected a JSON object, got {type(data).__name__}")
    return data


def validate(model: type[M], data: Mapping[str, Any], source: str) -> M:
    """``model`` built from ``data``; a fault names ``source`` and every field at fault."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigFileError(f"{source}: {faults}") from None


def read_model(model: type[M], path: str | Path, option: str) -> M:
    """``model`` from the JSON file ``path`` given as ``option``."""
    return validate(model, read_json_object(path, option), f"{option} {path}")
