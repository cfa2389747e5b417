"""Typed configuration loading: YAML files validated into pydantic models at load time.

Every error names the key, the offending value and what is allowed, so a bad config fails before
any work starts.
"""
from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that failed validation; the message names key, value and what is allowed."""


class StrictModel(BaseModel):
    """Base for all config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated[...]`` and ``Optional[...]`` around a field type."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tagged(tp: Any, tag: Any) -> bool:
    """Whether model ``tp`` has a ``Literal`` field admitting ``tag`` (a discriminated-union member)."""
    return any(get_origin(_unwrap(f.annotation)) is Literal and tag in get_args(_unwrap(f.annotation))
               for f in tp.model_fields.values())


def allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The keys allowed in the mapping at ``loc`` (an error location inside ``model``), if known."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if _is_model(tp):
            if part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif origin in (list, tuple, set, frozenset):
            tp = get_args(tp)[0] if get_args(tp) else Any
        elif origin is dict:
            tp = get_args(tp)[1] if get_args(tp) else Any
        elif origin in (Union, types.UnionType):
            members = [_unwrap(a) for a in get_args(tp) if _is_model(_unwrap(a)) and _tagged(_unwrap(a), part)]
            if len(members) != 1:
                return None
            tp = members[0]
        else:
            return None
    tp = _unwrap(tp)
    return sorted(tp.model_fields) if _is_model(tp) else None


def _describe(err: dict[str, Any], source: str, model: type[BaseModel] | None = None) -> str:
    key = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    value = err.get("input")
    msg = err.get("msg", "invalid")
    ctx = err.get("ctx") or {}
    allowed = ctx.get("expected")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
        try:
            valid = allowed_keys(model, tuple(err.get("loc", ()))[:-1]) if model is not None else None
        except Exception:  # noqa: BLE001 - a hint only: never let it hide the error itself
            valid = None
        if valid:
            allowed = ", ".join(valid)
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
