"""Reading a sweep file: YAML (strict), environment and ``--set`` overrides, then ``validate``.

Validation happens once, here, before anything is created: no MLflow run, no Ray session and no
file exists until a sweep file has passed every check. Each error names the file, the field path,
what was given and what is allowed. The models are ``hpo.config``; the rules across fields are
``hpo.rules``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from hpo import rules
from hpo.config import PARAM_KEYS, SweepConfig, did_you_mean, tag_param
from hpo.errors import ConfigError
from tracker.uri import TRACKING_URI_ENV


class DuplicateKey(yaml.YAMLError):
    """A mapping of the file holds the same key twice (PyYAML would keep the last one silently)."""

    def __init__(self, path: str, first_line: int, second_line: int) -> None:
        self.path, self.first_line, self.second_line = path, first_line, second_line
        super().__init__(f"key {path!r} appears twice: lines {first_line} and {second_line}; keep one of them")


class _SweepLoader(yaml.SafeLoader):
    """PyYAML's safe loader, strict about duplicate keys and reading ``1e-3`` and ``1e20`` as floats.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so ``values: [1e-3, 1e-2]``
    would arrive as two strings and fail as "expected a number"; YAML 1.2 (and every other tool) reads
    them as numbers. And it resolves ``name: a`` followed by ``name: b`` to ``b`` without a word: here
    that is :class:`DuplicateKey`, naming the key's dotted path and both lines.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._paths: dict[int, str] = {}  # id(node) -> dotted path, filled as parents are constructed

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        path = self._paths.get(id(node), "")
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            dotted = f"{path}.{key}" if path else str(key)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise DuplicateKey(dotted, seen[key], line)
            if isinstance(key, Hashable):
                seen[key] = line
            self._name(value_node, dotted)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def _name(self, node: yaml.Node, path: str) -> None:
        """Remember ``node``'s path (and its items' when it is a list) for the mappings inside it."""
        self._paths[id(node)] = path
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._name(item, f"{path}[{i}]")


_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_SweepLoader)  # noqa: S506 - a SafeLoader subclass


def load_sweep(path: str | os.PathLike[str], overrides: Mapping[str, str] | None = None) -> tuple[SweepConfig, str]:
    """Read, override and validate a sweep file.

    Args:
        path: the YAML sweep file.
        overrides: ``--set`` pairs, dotted key -> YAML value, applied on top of file and environment.

    Returns:
        The validated config and the file's text exactly as given.

    Raises:
        ConfigError: the file is missing, not YAML, or breaks any rule; nothing has been created.
    """
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError("no such sweep file" if not file.exists() else "not a file", source=source)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not a text (UTF-8) file: {e.reason} at byte {e.start}", source=source) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", source=source) from None
    try:
        raw = _parse_yaml(text)
    except DuplicateKey as e:
        raise ConfigError(str(e), source=source, field=e.path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", source=source) from e
    if not isinstance(raw, dict):
        raise ConfigError(f"a sweep file is a YAML mapping of fields, got {type(raw).__name__}", source=source)
    env_uri = os.environ.get(TRACKING_URI_ENV)
    if env_uri:
        raw["tracking_uri"] = env_uri
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source="--set")
    try:
        return validate(raw, source=source), text
    except ConfigError as e:
        if e.field is not None and any(e.field == k or e.field.startswith(k + ".") for k in overrides or {}):
            raise ConfigError(e.message, source=f"{source} (--set {e.field})", field=e.field) from None
        raise


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn ``["a.b=1", ...]`` into ``{"a.b": "1"}``.

    Raises:
        ConfigError: a pair has no ``=`` or an empty key.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {pair!r}", source="--set")
        result[key.strip()] = value
    return result


def _set_dotted(raw: dict[str, Any], key: str, value: str, *, source: str) -> None:
    try:
        parsed = _parse_yaml(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"value is not valid YAML: {value!r}", source=source, field=key) from e
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part} holds {child!r}, not a mapping", source=source, field=key)
        node = child
    node[parts[-1]] = parsed


def validate(raw: dict[str, Any], *, source: str = "<sweep>") -> SweepConfig:
    """Validate a raw mapping into a ``SweepConfig``, including the trainer-specific rules.

    Raises:
        ConfigError: the first broken rule, naming field, given value and what is allowed.
    """
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise _first_error(e, raw, source) from None
    rules.check(config, source=source)
    return config


def _first_error(error: ValidationError, raw: Mapping[str, Any], source: str) -> ConfigError:
    errors = error.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    detail = (unknown or errors)[0]  # a misspelt key explains the "missing" errors that come with it
    loc = [str(p) for p in detail["loc"] if p not in ("fixed", "choice", "range", "function-after")]
    field = ".".join(loc) or None
    kind = detail["type"]
    if kind == "extra_forbidden" and loc:
        allowed = _allowed_keys(loc[:-1], raw)
        hint = did_you_mean(loc[-1], allowed)
        return ConfigError(
            f"unknown key {loc[-1]!r}{hint}; allowed keys here: {', '.join(sorted(allowed))}",
            source=source,
            field=field,
        )
    if kind == "missing":
        return ConfigError("this field is required", source=source, field=field)
    message = detail["msg"].removeprefix("Value error, ")
    if kind != "value_error" and "input" in detail and "got" not in message:
        message = f"{message}; got {detail['input']!r}"
    return ConfigError(message, source=source, field=field)


def _allowed_keys(loc: list[str], raw: Mapping[str, Any]) -> set[str]:
    """The field names of the model that sits at ``loc``, for 'did you mean' hints."""
    model: type[BaseModel] = SweepConfig
    node: Any = raw
    for i, part in enumerate(loc):
        node = node.get(part) if isinstance(node, dict) else None
        if model is SweepConfig and part == "parameters" and i + 1 < len(loc):
            continue
        if i >= 1 and loc[i - 1] == "parameters":
            kind = tag_param(node).get("kind", "fixed") if isinstance(node, dict) else "fixed"
            return PARAM_KEYS[kind] - {"kind"}
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        # an optional block (`confirm: Confirm | None`): its model
        annotation = next((a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                          annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return {name for name, info in model.model_fields.items() if not info.exclude}  # not internal fields


def validate_stored(raw: dict[str, Any], overrides: Mapping[str, str] | None = None, *, source: str) -> SweepConfig:
    """Validate a stored resolved config (a sweep's ``resolved_config.json``) with ``--set`` pairs on top.

    The same checks as a sweep file (:func:`load_sweep`), so ``hpo resume`` continues a sweep with the
    config it ran with, its own ``--set`` values included, changed only where asked now.

    Raises:
        ConfigError: the config with the overrides breaks a rule; an override's error names ``--set``.
    """
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source="--set")
    try:
        return validate(raw, source=source)
    except ConfigError as e:
        if e.field is not None and any(e.field == k or e.field.startswith(k + ".") for k in overrides or {}):
            raise ConfigError(e.message, source=f"{source} (--set {e.field})", field=e.field) from None
        raise
