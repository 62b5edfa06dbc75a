"""One way to declare and check settings: typed dataclass fields carrying their rules.

Every option class (and the run-level blocks ``measure``, ``rank`` and the
top-level keys) is a dataclass; a field's type hint says what kind of value it
takes and :func:`setting` attaches the rules its value must follow. The job
checks a block in two steps, before any data is loaded or any MLflow run is
opened: :func:`check_keys_and_types` on the raw YAML/command-line values (so a
typo or ``epochs=abc`` never reaches a constructor), then :func:`check_rules`
on the built object. Each failure is one line a user can act on:
``train.epochs=0 is not valid: expected an integer >= 1.``

A class of a user's own that is not a dataclass is taken as it is: its
constructor is its schema.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweep.errors import UserError


class ConfigError(UserError, ValueError):
    """A setting has a value the tool cannot use."""


@dataclass(frozen=True)
class Rule:
    """A check on a field's value; ``valid`` says what passes, in the user's words.

    ``valid`` may name ``{kind}`` (the field's type, e.g. "an integer"),
    ``{group}`` and any field of the object (``{initial_sparsity}``).
    """

    check: Callable[[Any, Any], bool]  # (value, the object) -> ok
    valid: str


def at_least(low: float) -> Rule:
    return Rule(lambda v, _: v >= low, f"{{kind}} >= {low:g}")


def above(low: float) -> Rule:
    return Rule(lambda v, _: v > low, f"{{kind}} > {low:g}")


def fraction() -> Rule:
    """A share in [0, 1): sparsity can approach but never reach 1."""
    return Rule(lambda v, _: 0 <= v < 1, "a fraction in [0, 1)")


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v, _: v in choices, f"one of {list(choices)}")


def not_below(other: str) -> Rule:
    """At least the value of another field of the same object."""
    return Rule(lambda v, obj: v >= getattr(obj, other), f">= {{group}}.{other} ({{{other}}})")


def plain_name() -> Rule:
    """A non-empty name usable as a folder name and a tag value."""
    return Rule(
        lambda v, _: bool(v) and "/" not in v and v not in (".", ".."),
        "a non-empty plain name (no '/')",
    )


def setting(
    default: Any = dataclasses.MISSING, *rules: Rule, factory: Any = None, rule: Rule | None = None
) -> Any:
    """A dataclass field with rules: ``epochs: int = setting(10, at_least(1))``.

    ``factory`` (with ``rule``) is for mutable defaults: ``setting(factory=dict, rule=...)``.
    """
    rules = (*rules, rule) if rule is not None else rules
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rules": rules})
    return dataclasses.field(default=default, metadata={"rules": rules})


_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    type(None): "null",
    dict: "a mapping",
    list: "a list",
}


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def accepts(annotation: Any, value: Any) -> bool:
    """Does ``value`` (from YAML or the command line) fit a field's type hint?"""
    if annotation is Any or (value is None and _optional(annotation)):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(a, value) for a in typing.get_args(annotation))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    check = origin or annotation
    return isinstance(value, check) if isinstance(check, type) else True


def describe(annotation: Any) -> str:
    """``int | None`` → "an integer or null": the words a user would use."""
    options = typing.get_args(annotation) or (annotation,)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        options = (annotation,)
    return " or ".join(_WORDS.get(typing.get_origin(o) or o, str(o)) for o in options)


def _name(group: str, key: str) -> str:
    return f"{group}.{key}" if group else key


def check_keys_and_types(group: str, cls: type, settings: dict[str, Any]) -> None:
    """Unknown keys and wrong types, named as the user would write them.

    ``group`` is the config path of the block ("train", "measure"; "" for top-level keys).
    """
    if not dataclasses.is_dataclass(cls):
        return
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    where = f"{group} '{settings.get('name', cls.__name__)}'" if group else "the run settings"
    for key, value in settings.items():
        if key not in fields:
            raise ConfigError(
                f"{_name(group, key)} is not a setting of {where} ({cls.__module__}."
                f"{cls.__name__}); valid settings: {', '.join(sorted(fields))}."
            )
        if not accepts(hints[key], value):
            raise ConfigError(
                f"{_name(group, key)}={value!r} is not valid: expected {describe(hints[key])}."
            )


def check_rules(group: str, obj: Any) -> None:
    """Every field's rules on a built object; the first broken one raises ConfigError."""
    if not dataclasses.is_dataclass(obj):
        return
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        annotation = hints[field.name]
        if value is None and _optional(annotation):
            continue
        for rule in field.metadata.get("rules", ()):
            if rule.check(value, obj):
                continue
            base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            kind = describe(base[0])
            valid = rule.valid.format(kind=kind, group=group, **vars(obj))
            if _optional(annotation):
                valid += ", or null"
            raise ConfigError(
                f"{_name(group, field.name)}={value!r} is not valid: expected {valid}."
            )


def build(group: str, cls: type, settings: dict[str, Any]) -> Any:
    """Check ``settings`` against ``cls``, construct it, then check its rules."""
    check_keys_and_types(group, cls, settings)
    obj = cls(**settings)
    check_rules(group, obj)
    return obj
