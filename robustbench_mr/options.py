"""Options declared once: a dataclass field's metadata is its command-line flag, default, help
text and config-file key.

::

    @dataclass(frozen=True)
    class VerifyOptions:
        checkpoint: str = option(positional=True, help="a .pt file written by mr-train")
        timeout: float = option(120.0, type=positive_float, help="seconds per input")

    add_options(parser, VerifyOptions)          # --timeout SECONDS, help "... (default: 120)"
    options = from_args(VerifyOptions, namespace)

Config files (``--config FILE.yaml|.toml``) work on any parser built from argparse actions,
declared here or by hand: each action's ``dest`` is a key (``data_dir``; ``data-dir`` is
accepted too), a value goes through the same ``type`` / ``choices`` as on the command line,
and flags given on the command line win over the file (:func:`merge_config`). Unknown keys are
one error line naming the key and the known keys. :func:`dump_config` writes the effective
options back in either format (``--print-config``), and reading that output gives the same
options again.

A field with no default is required: from the command line or the file (positional ones are
``nargs="?"`` for that reason, checked by :func:`check_required` after the merge).
Nothing here imports anything beyond the standard library (PyYAML only to read or write YAML).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from robustbench_mr.errors import UserError

META_KEY = "robustbench_mr.option"
CONFIG_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
# argparse destinations that are never config keys
NOT_CONFIG = frozenset({"help", "version", "config", "print_config"})


class ConfigError(UserError):
    """A config file that cannot be used (unreadable, malformed, unknown key, bad value): a
    usage error, so the CLIs print it as one line and exit 2."""


# --- argparse types shared by every command (a bad value is a usage error, exit 2) ------------

def positive_int(text: str) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return v


def eps_arg(text: str) -> float:
    """argparse type for L-inf radii: ``8/255``, ``0.031`` (``utils.eps.parse_eps``: > 0, <= 1)."""
    from robustbench_mr.utils.eps import parse_eps

    try:
        return parse_eps(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def radius_arg(text: str) -> float:
    """argparse type for radii that may exceed 1 (L2, Wasserstein)."""
    from robustbench_mr.utils.eps import parse_eps

    try:
        return parse_eps(text, max_value=None)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- declaring options ---------------------------------------------------------------------

@dataclass(frozen=True)
class OptionSpec:
    """How one dataclass field appears on the command line and in config files."""

    help: str
    flag: str | None = None  # "--timeout-cap"; None: "--" + the field name with "-"
    aliases: tuple[str, ...] = ()  # more option strings for the same flag, e.g. ("-j",)
    type: Callable[[str], Any] | None = None  # argparse type; None: from the annotation
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    default_text: str | None = None  # how --help shows the default; None: the value itself
    positional: bool = False
    action: str | None = None  # None (store, or store_true for bool), "count", "append", "store_const"
    const: Any = None  # for action="store_const"
    cli: bool = True  # False: API only (no flag, no config key)


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with its CLI spec (see :class:`OptionSpec` for the keywords)."""
    return field(default=default, default_factory=default_factory, metadata={META_KEY: OptionSpec(help=help, **spec)})


def option_spec(f: dataclasses.Field) -> OptionSpec | None:
    return f.metadata.get(META_KEY)


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options."""
    return [f for f in fields(cls) if (s := option_spec(f)) is not None and s.cli]


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _annotation(cls: type, name: str) -> Any:
    return _strip_optional(typing.get_type_hints(cls).get(name, str))


def _element_type(tp: Any) -> Any:
    """``tuple[str, ...]`` / ``list[int]`` -> the element type; anything else -> None."""
    if typing.get_origin(tp) in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _converter(tp: Any) -> Callable[[str], Any] | None:
    if tp in (int, float, Path):
        return tp
    return None


def show_default(value: Any) -> str:
    """A default as --help shows it (radii as 8/255)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        from robustbench_mr.utils.eps import format_eps

        return format_eps(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


class ReplaceAppend(argparse.Action):
    """``append`` whose first use on the command line replaces the default (e.g. a list from the
    config file) instead of adding to it: the command line wins, as for every other flag."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        items.append(values)
        setattr(namespace, self.dest, items)


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                defaults: Mapping[str, Any] | None = None, default_text: Mapping[str, str] | None = None) -> list[str]:
    """Add a flag (or positional argument) for each option field of ``cls``; returns their dests.

    ``defaults`` replaces field defaults for this parser (e.g. a preset's numbers) and
    ``default_text`` how --help shows them. A field without a default is required (checked
    after the config file is merged: :func:`check_required`)."""
    wanted = set(only) if only is not None else None
    skip = set(exclude)
    defaults = dict(defaults or {})
    shown_as = dict(default_text or {})
    dests = []
    for f in option_fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in skip:
            continue
        spec = option_spec(f)
        assert spec is not None
        tp = _annotation(cls, f.name)
        default = defaults[f.name] if f.name in defaults else field_default(f)
        required = default is MISSING
        if required:
            default = None
        kwargs: dict[str, Any] = {"default": default}
        action = spec.action
        element = _element_type(tp)
        if action is None and tp is bool:
            action = "store_true" if not default else argparse.BooleanOptionalAction
        if action is None and element is not None:
            action = "append"
        if action == "append":
            kwargs["action"] = ReplaceAppend
            kwargs["type"] = spec.type or _converter(element)
            kwargs["default"] = list(default) if default else None
        elif action in ("store_true", "count", argparse.BooleanOptionalAction):
            kwargs["action"] = action
        elif action == "store_const":
            kwargs.update(action="store_const", const=spec.const)
        else:
            kwargs["type"] = spec.type or _converter(tp)
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        text = shown_as.get(f.name, spec.default_text)
        help_text = spec.help
        if required:
            help_text += " (required)"
        elif text is not None:
            help_text += f" (default: {text})"
        elif default is not None and action not in ("store_true", "count", "store_const", argparse.BooleanOptionalAction):
            help_text += f" (default: {show_default(default)})"
        kwargs["help"] = help_text.replace("%", "%%").replace("%%%%", "%%")
        if spec.positional:
            parser.add_argument(f.name, nargs="?", **kwargs)
            label = f.name
        else:
            flag = spec.flag or "--" + f.name.replace("_", "-")
            parser.add_argument(flag, *spec.aliases, dest=f.name, **kwargs)
            label = flag
        if required:
            _required(parser).append((f.name, label))
        dests.append(f.name)
    return dests


def _required(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    if not hasattr(parser, "_mr_required"):
        parser._mr_required = []  # type: ignore[attr-defined]
    return parser._mr_required  # type: ignore[attr-defined]


def check_required(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse's own error (usage, exit 2) for required options that neither the command line
    nor the config file gave."""
    missing = [label for dest, label in _required(parser) if getattr(args, dest, None) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def from_args(cls: type, namespace: argparse.Namespace | Mapping[str, Any], **overrides: Any) -> Any:
    """``cls(...)`` from the parsed flags (``overrides`` win; fields absent from both keep their
    defaults). Lists become tuples where the field is a tuple."""
    values = vars(namespace) if isinstance(namespace, argparse.Namespace) else dict(namespace)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif (spec := option_spec(f)) is not None and spec.cli and f.name in values:
            v = values[f.name]
            if isinstance(v, list) and typing.get_origin(_annotation(cls, f.name)) is tuple:
                v = tuple(v)
            elif v is None and isinstance(field_default(f), tuple):
                v = field_default(f)
            kwargs[f.name] = v
    return cls(**kwargs)


# --- config files --------------------------------------------------------------------------

def config_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``key -> action`` for every option of ``parser`` that a config file may set."""
    out = {}
    for a in parser._actions:
        if a.dest in NOT_CONFIG or a.dest == argparse.SUPPRESS or a.dest.startswith("_"):
            continue
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        out[a.dest] = a
    return out


def config_format(path: str | Path) -> str:
    fmt = CONFIG_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--config {path}: unknown file type {Path(path).suffix or '(none)'!r}; use .yaml, .yml or .toml")
    return fmt


def load_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML file (by its suffix); any problem is one ConfigError line."""
    fmt = config_format(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read the file ({exc.strerror or exc})") from None
    if fmt == "toml":
        import tomllib

        try:
            loaded = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"--config {path}: reading YAML needs PyYAML (pip install pyyaml); or write the file as .toml") from None
        try:
            loaded = yaml.safe_load(data.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if loaded is None:
            loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values (key: value), got a {type(loaded).__name__}")
    return loaded


def _as_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A config value through the action's own type and choices (as if typed on the command line)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {why}")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise bad(f"expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._StoreConstAction):
        if value is not None and value != action.const and value != action.default:
            raise bad(f"expected {action.const!r} or null, got {value!r}")
        return value
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"expected a count (0, 1, 2, ...), got {value!r}")
        return value
    many = isinstance(action, (ReplaceAppend, argparse._AppendAction)) or action.nargs in ("*", "+")
    if value is None:
        return None
    if many:
        items = value if isinstance(value, list) else [value]
        return [_convert_one(action, item, bad) for item in items]
    if isinstance(value, (list, dict)):
        raise bad(f"expected one value, got {value!r}")
    return _convert_one(action, value, bad)


def _convert_one(action: argparse.Action, value: Any, bad: Callable[[str], ConfigError]) -> Any:
    if isinstance(value, (list, dict)) or (isinstance(value, bool) and action.type is not None):
        raise bad(f"expected a value like {action.metavar or action.dest!r} on the command line, got {value!r}")
    try:
        converted = action.type(_as_text(value)) if action.type is not None else _as_text(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise bad(str(exc) if isinstance(exc, argparse.ArgumentTypeError) else f"invalid value {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise bad(f"{converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def config_defaults(parser: argparse.ArgumentParser, config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``dest -> value`` for ``parser.set_defaults`` from a loaded config; an unknown key is one
    error line naming it and every known key."""
    actions = config_actions(parser)
    out: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = str(raw_key).replace("-", "_")
        if key not in actions:
            raise ConfigError(f"{where}: unknown key {str(raw_key)!r}; known keys: {', '.join(actions)}")
        out[key] = _convert(actions[key], str(raw_key), value, where)
    return out


def merge_config(parser: argparse.ArgumentParser, subparser: argparse.ArgumentParser, argv: list[str] | None,
                 config_path: str | Path) -> argparse.Namespace:
    """Parse ``argv`` again with the config file's values as ``subparser``'s defaults: the
    command line wins over the file, and the file over the declared defaults."""
    values = config_defaults(subparser, load_config(config_path), f"--config {config_path}")
    subparser.set_defaults(**values)
    return parser.parse_args(argv)


def effective_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every config key of ``parser`` with its value in ``args`` (plain data: str, int, float,
    bool, None, lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "value") and not isinstance(v, (int, float, str)):  # an Enum
            return v.value
        return v

    return {key: plain(getattr(args, key, None)) for key in config_actions(parser)}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string


def dump_config(values: Mapping[str, Any], fmt: str) -> str:
    """``values`` as YAML or TOML text that :func:`load_config` reads back to the same values
    (TOML has no null: unset options are written as comments and keep their defaults)."""
    if fmt == "toml":
        lines = []
        for k, v in values.items():
            lines.append(f"# {k} = (unset: the default)" if v is None else f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"
    import yaml

    return yaml.safe_dump(dict(values), sort_keys=False, default_flow_style=False, allow_unicode=True)


__all__ = ["ConfigError", "OptionSpec", "add_options", "check_required", "config_actions", "config_defaults", "dump_config",
           "effective_config", "eps_arg", "from_args", "load_config", "merge_config", "nonneg_int", "option", "option_fields",
           "positive_float", "positive_int", "radius_arg"]
