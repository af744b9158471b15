"""Pydantic models read from JSON or TOML files, and validation errors as one line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from permalloc.errors import SpecError

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
        text += f"[{item}]" if isinstance(item, int) else f".{item}"
    return f"{text.lstrip('.') or 'value'}: {err['msg']}"


def load_model_file(path: str | Path, model: type[M]) -> M:
    """Read ``model`` from a .toml or .json file; ``name`` defaults to the file's stem.

    Every error is one line naming the file (and the field, for invalid values).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: not valid {kind}: {exc}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {format_validation_error(exc)}") from None
