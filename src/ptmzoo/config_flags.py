"""Command-line flags made from ``Config`` fields.

A setting's name, type, default and help are written once, on its dataclass field
(``config.setting``); this module turns fields into argparse flags and reads the given values
back. Two ways to default: ``given_only`` flags default to None ("not given", the config
supplies the value, and the caller can tell what the user set); the others take the field's own
default. Either way the help shows the field's default.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

from .config import Config


def flag_of(field: dataclasses.Field) -> str | None:
    """``--field-name``, the ``flag`` of the field's metadata, or None for a field without a flag.
    Only fields declared with ``config.setting`` (they have a help) are flags."""
    flag = field.metadata.get("flag", False)
    if flag is False:
        return None
    return flag if isinstance(flag, str) else "--" + field.name.replace("_", "-")


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def shown_default(value: Any) -> str | None:
    """The default as the help shows it; None when there is nothing to show (an unset value, a
    switch that is off)."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def comma_list(text: str) -> list[str]:
    """``a, b,c`` -> ``["a", "b", "c"]`` (list settings on the command line)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _plain_type(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def flag_fields(cls: type[Config], names: Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are flags (all of them, or those named, in that order)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if flag_of(f)}
    return [fields[name] for name in names] if names is not None else list(fields.values())


def add_field_flag(container, cls: type[Config], field: dataclasses.Field, given_only: bool) -> None:
    """One flag for ``field`` of ``cls`` on a parser or argument group; its dest is the field name."""
    tp = _plain_type(cls.field_types()[field.name])
    meta = field.metadata
    default = field_default(field)
    help_text = meta["help"].replace("%", "%%")
    shown = shown_default(default)
    if shown is not None:
        help_text += f" (default: {shown.replace('%', '%%')})"
    kwargs: dict[str, Any] = {"dest": field.name, "help": help_text,
                              "default": None if given_only else default}
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
    else:
        if typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = typing.get_args(tp)
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["type"] = comma_list
            kwargs.setdefault("metavar", "A,B,...")
        elif tp in (int, float):
            kwargs["type"] = tp
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
    if meta.get("required"):
        kwargs["required"] = True
    container.add_argument(flag_of(field), **kwargs)


def add_config_flags(container, cls: type[Config], names: Iterable[str] | None = None,
                     given_only: bool = False) -> None:
    """Flags for the fields of ``cls`` that are flags (or those named)."""
    for field in flag_fields(cls, names):
        add_field_flag(container, cls, field, given_only)


def given_values(args: argparse.Namespace, fields: Iterable[dataclasses.Field]) -> dict[str, Any]:
    """The values of the ``given_only`` flags of ``fields`` that were given."""
    return {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name, None) is not None}


class HelpFormatter(argparse.HelpFormatter):
    """Shows the default of every flag whose help does not already speak of it (a flag without a
    help too)."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        """Not for an unset value or a switch that is off; a default of 0 is shown (0 == False)."""
        default = action.default
        if action.required or default is None or default is False or default is argparse.SUPPRESS:
            return False
        return not (isinstance(default, (str, list)) and not default)

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._shows_default(action) and (action.option_strings or action.nargs == "?"):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or not self._shows_default(action):
            return text
        return text + " (default: %(default)s)"
