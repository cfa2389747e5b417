"""Typed configuration loading: YAML files validated into pydantic models at load time.

Every error names the key, the offending value and what is allowed, so a bad config fails before
any work starts.
"""
from __future__ import annotations

from pathlib import Path
import typing
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that failed validation; the message names key, value and what is allowed."""


class StrictModel(BaseModel):
    """Base for all config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _model_in(tp: Any, part: Any) -> Any:
    """The type reached from type ``tp`` by one step ``part`` of a pydantic error location."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _model_in(args[0], part)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for arm in args:  # a discriminated union: the location names the tag or the class
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                tag = arm.model_fields.get("name")
                tags = typing.get_args(tag.annotation) if tag is not None else ()
                if part == arm.__name__ or part in tags:
                    return arm
        return None
    if origin in (list, tuple, dict):
        return args[-1] if args else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field is not None else None
    return None


def allowed_keys(model: Any, loc: tuple = ()) -> list[str]:
    """Keys of the model found at error location ``loc`` (through dicts, lists and tagged unions)."""
    tp = model
    for part in loc:
        tp = _model_in(tp, part)
        if tp is None:
            return []
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return sorted(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _describe(err: dict[str, Any], source: str, model: Any = None) -> str:
    key = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    value = err.get("input")
    msg = err.get("msg", "invalid")
    ctx = err.get("ctx") or {}
    allowed = ctx.get("expected")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
        keys = allowed_keys(model, tuple(err.get("loc", ()))[:-1]) if model is not None else []
        if keys:
            msg += f" (allowed keys here: {', '.join(keys)})"
    text = f"{source}: key '{key}' has value {value!r}: {msg}"
    if allowed and str(allowed) not in msg:
        text += f" (allowed: {allowed})"
    return text


def validate(model: type[M], data: Any, source: str = "config") -> M:
    """Validate ``data`` into ``model``, turning pydantic's errors into one readable ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, source, model) for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Load and validate a YAML file into ``model``."""
    return validate(model, load_yaml(path), source=str(path))
