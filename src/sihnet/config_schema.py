"""Nested mappings (YAML) into frozen dataclasses, checked against the fields' types: the
configuration's loader, apart from what the configuration holds (:mod:`sihnet.config`)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from sihnet.errors import SihnetError


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field's type and convert YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise SihnetError(f"config: {where} must be a mapping")
        return build(annotation, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise SihnetError(
                f"config: {where} must be one of {typing.get_args(annotation)}, got {value!r}"
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SihnetError(f"config: {where} must be a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0]
        if args[-1] is not Ellipsis and len(args) != len(value):
            raise SihnetError(f"config: {where} needs {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if value is None and type(None) in members:
            return None
        problems = []
        for member in (m for m in members if m is not type(None)):
            try:
                return _coerce(value, member, where)
            except SihnetError as error:
                problems.append(str(error).split(" must be ", 1)[-1].split(", got")[0])
        raise SihnetError(f"config: {where} must be {' or '.join(problems)}, got {value!r}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise SihnetError(f"config: {where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SihnetError(f"config: {where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SihnetError(f"config: {where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise SihnetError(f"config: {where} must be text, got {value!r}")
        return value
    return value


def build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """An instance of the dataclass ``cls`` from ``values``: unknown keys and values of the wrong
    type are one line naming the key (``where`` is the dotted path so far)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise SihnetError(
            f"config: unknown key {prefix}{unknown[0]!s} (known: {', '.join(sorted(names))})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        field_where = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise SihnetError(f"config: {field_where} must be a mapping")
            kwargs[name] = build(hint, value, field_where)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, field_where)
    return cls(**kwargs)
