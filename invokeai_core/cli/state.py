"""Global CLI options and the objects commands share (configuration, plugin host), built lazily."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost


class CliError(click.ClickException):
    """Bad input: one line on stderr, exit status 2, nothing ran."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"invokeai: error: {self.format_message()}", err=True)


@dataclass
class GlobalOptions:
    root: str | None = None
    config_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def read_input(path: str) -> str:
    """The text of a file argument (`-` is stdin): one line and exit 2 when it cannot be read or is
    not UTF-8."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"{path}: not UTF-8 text (byte {e.start})") from None


def check_argv(argv: list[str]) -> None:
    """Refuse arguments that are not valid UTF-8 (Python hands them over as lone surrogates), before
    anything reads them: nothing that cannot be stored and printed gets in."""
    from invokeai_core.errors import find_invalid_text, printable

    for i, arg in enumerate(argv, 1):
        found = find_invalid_text(arg)
        if found is not None:
            shown = printable(arg)[:80].encode("unicode_escape").decode("ascii")  # one line, whatever it holds
            raise CliError(f"argument {i} ({shown}) is not valid UTF-8: {found[1]}")


def parse_override(text: str) -> tuple[str, Any]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CliError(f"-o/--option expects KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def preparse(argv: list[str]) -> GlobalOptions:
    """Read the global options before click does, so plugin commands come from the right host."""
    opts = GlobalOptions()
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-"):
            break
        name, eq, inline = tok.partition("=")
        if name in ("--root", "--config", "-o", "--option"):
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            i += 1 if eq else 2
            if value is None:
                break
            if name == "--root":
                opts.root = value
            elif name == "--config":
                opts.config_file = value
            else:
                try:
                    k, v = parse_override(value)
                except CliError:
                    continue
                opts.overrides[k] = v
            continue
        i += 1
    return opts


class CliState:
    """Shared by every command through `click.pass_obj`."""

    def __init__(self, options: GlobalOptions) -> None:
        self.options = options
        self._config: InvokeAIConfig | None = None
        self._host: PluginHost | None = None

    @property
    def config(self) -> InvokeAIConfig:
        if self._config is None:
            from invokeai_core.config import load_config
            from invokeai_core.errors import ConfigError

            try:
                self._config = load_config(
                    root=self.options.root, config_file=self.options.config_file, overrides=self.options.overrides
                )
            except ConfigError as e:
                raise CliError(str(e)) from None
        return self._config

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            from invokeai_core.errors import PluginError
            from invokeai_core.plugins.host import PluginHost

            try:
                self._host = PluginHost(self.config).load()
            except PluginError as e:
                raise CliError(str(e)) from None
        return self._host

    def invoker(self) -> Invoker:
        from invokeai_core.errors import InvokeAIError
        from invokeai_core.invoker import Invoker

        try:
            return Invoker.from_config(self.config, self.host)
        except InvokeAIError as e:
            raise CliError(str(e)) from None


#: Passes the `CliState` to a command (`@pass_state def cmd(state: CliState, ...)`).
pass_state = click.make_pass_decorator(CliState)
