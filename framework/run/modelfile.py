"""Pydantic models read from JSON or TOML files, and validation errors as one line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from permalloc.errors import SpecError
from permalloc.filekind import special_kind

M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, prefix: str = "", tagged: bool = False) -> str:
    """The first error of a pydantic ValidationError as ``ops[3].size: message``.

    ``tagged``: the location holds a discriminated-union tag after the list index (pydantic
    puts the op name there), which is dropped.
    """
    err = exc.errors()[0]
    loc = list(err["loc"])
    if tagged and len(loc) >= 2 and isinstance(loc[0], int):
        del loc[1]
    text = prefix
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        else:  # a key as the file spells it, quoted if it would not read as one word (found by modelfuzz)
            text += f".{item}" if str(item).isprintable() and " " not in str(item) else f".{str(item)!r}"
    message = " ".join(err["msg"].removeprefix("Value error, ").split())
    return f"{text.lstrip('.') or 'value'}: {message}"


def parse_json(text: str) -> Any:
    """``json.loads``, with nesting deeper than the parser's recursion limit as a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def load_model_file(path: str | Path, model: type[M]) -> M:
    """Read ``model`` from a .toml or .json file; ``name`` defaults to the file's stem.

    Every error is one line naming the file (and the field, for invalid values).
    """
    path = Path(path)
    try:
        if kind := special_kind(path):
            raise SpecError(f"{path}: cannot read: {kind} (only regular files are read)")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        data = tomllib.loads(text) if kind == "TOML" else parse_json(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise SpecError(f"{path}: not valid {kind}: {' '.join(str(exc).split()) or 'nested too deeply'}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {format_validation_error(exc)}") from None
