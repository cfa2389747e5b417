"""The one command-line vocabulary of every ``humans`` command.

Every command spells the same idea the same way: ``--out`` (where results go), ``--threads`` (CPU
threads / processes of the local machine), ``--device`` (cpu | cuda | auto), ``--config FILE`` (a YAML
file of the command's config keys) and ``--set KEY=VALUE`` (repeatable dotted overrides), parsed here
by :func:`parse_set` only. :class:`HelpFormatter` shows every option's default in ``--help`` and keeps
the examples of the epilog as written. :func:`run_cli` is the one dispatch: every subcommand names its
function with ``set_defaults(func=...)``, and errors of the user's making print one ``error:`` line
(exit status 2) instead of a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

import yaml

from .config import ConfigError

SHARED_FLAGS = ("--out", "--threads", "--device", "--config", "--set")
# Older spellings still accepted (so existing scripts keep working) but never shown in --help.
OLD_SPELLINGS = {"--output": "--out", "--num-cpus": "--threads", "--workers": "--threads"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs kept as written; ``(default: X)`` added to every option that has one;
    the older spellings of :data:`OLD_SPELLINGS` left out."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if o not in OLD_SPELLINGS]
        if shown == action.option_strings:
            return super()._format_action_invocation(action)
        clone = argparse.Action(shown, action.dest, nargs=action.nargs, metavar=action.metavar)
        clone.default, clone.help = action.default, action.help
        return super()._format_action_invocation(clone)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS, False, []):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def examples(*lines: str) -> str:
    """An epilog listing example command lines (every subcommand's ``--help`` ends with one)."""
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "name=x"]`` -> ``{"a.b": 1, "name": "x"}``; values are read as YAML (numbers, lists,
    booleans, null), an empty value is the empty string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=0.001")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from None
    return out


def _old(new: str, old: tuple[str, ...]) -> list[str]:
    bad = [o for o in old if OLD_SPELLINGS.get(o) != new]
    if bad:
        raise ValueError(f"{bad} are not older spellings of {new} (known: {OLD_SPELLINGS})")
    return [new, *old]


def add_out(p: argparse.ArgumentParser, help: str, required: bool = True, old: tuple[str, ...] = (),
            **kw: Any) -> None:
    p.add_argument(*_old("--out", old), dest="out", required=required, help=help, **kw)


def add_threads(p: argparse.ArgumentParser, help: str = "CPU threads to use (default: all cores)",
                old: tuple[str, ...] = (), **kw: Any) -> None:
    kw.setdefault("default", None)
    p.add_argument(*_old("--threads", old), dest="threads", type=int, help=help, **kw)


def add_config(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--config", default=None, metavar="FILE", help=help)


def add_set(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key (dotted; value read as YAML; repeatable), e.g. --set {example}")


def set_dotted(data: dict[str, Any], overrides: dict[str, Any], source: str = "--set") -> dict[str, Any]:
    """Write ``{"a.b": v}`` into nested dict ``data`` as ``data["a"]["b"] = v`` (in place; returned)."""
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: key '{dotted}': '{part}' is not a section")
        node[parts[-1]] = value
    return data


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
            user_errors: tuple[type[BaseException], ...] | Callable[[], tuple[type[BaseException], ...]] = (
                ConfigError, FileNotFoundError, ValueError),
            before: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``func(args)`` (its return value, default 0, is
    the exit status). ``user_errors`` (or a function giving them, so a command can name error classes
    of modules it imports late) print as one ``error: ...`` line with exit status 2; ``before(args)``
    runs first (e.g. thread settings)."""
    from .runtime import setup_runtime

    setup_runtime()
    args = parser.parse_args(argv)
    if before is not None:
        before(args)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        errors = user_errors() if callable(user_errors) else user_errors
        if not isinstance(exc, errors):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
