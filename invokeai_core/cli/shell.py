"""The interactive shell of `invokeai run` (no pipeline given): `invoke> ` lines in one session.

Every line is a pipeline (`pipeline.py`) appended to the current session and run at once; node ids
count up across lines, so `--link -1 value a` reaches the last node of the previous line, and a
line starting with `|` auto-links from it. Built-ins:

    help [COMMAND]          the built-ins and node commands, or one command's help
    history [N]             the last N lines (all by default); `!N` runs line N again
    default FIELD VALUE     set FIELD on every later node that has it (unless given or linked)
    default                 list the defaults
    reset_default FIELD     forget a default
    new                     start a fresh session (node ids restart at 1)
    exit, quit, Ctrl-D      leave

On a terminal the shell uses `readline`: line editing, history kept in `<root>/cli_history`, and tab
completion of commands, options, choices and fields. When stdin is not a terminal it reads lines
without a prompt, prints nothing but results and errors, and exits with the worst status of its
lines (0 ok, 1 a session failed, 2 bad input); an interactive shell exits 0. `#` starts a comment line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from invokeai_core.cli.state import CliError

if TYPE_CHECKING:
    from invokeai_core.cli.runner import CliSession

PROMPT = "invoke> "
HISTORY_FILE = "cli_history"
HISTORY_LENGTH = 1000

BUILTINS: dict[str, str] = {
    "help": "help [COMMAND]: list commands, or show one command's options",
    "history": "history [N]: show the last N lines; !N runs line N again",
    "default": "default FIELD VALUE: set FIELD on every later node that has it; `default` lists them",
    "reset_default": "reset_default FIELD: forget a default",
    "new": "new: start a fresh session (node ids restart at 1)",
    "exit": "exit: leave the shell (also quit, Ctrl-D)",
}
ALIASES = {"quit": "exit"}


class Exit(Exception):
    """Leave the shell."""


class Shell:
    def __init__(
        self, runner: CliSession, *, history_path: Path | None, interactive: bool, stdin: TextIO | None = None
    ):
        self.runner = runner
        self.interactive = interactive
        self.history_path = history_path
        self.stdin = stdin if stdin is not None else sys.stdin
        self.lines: list[str] = []  # history (persistent part first when interactive)
        self.status = 0
        self.readline: Any = None
        runner.extra_commands = [*BUILTINS, *ALIASES]

    # -- the loop -------------------------------------------------------------------------------
    def setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - platforms without readline
            return
        self.readline = readline
        readline.set_history_length(HISTORY_LENGTH)
        readline.set_auto_history(False)  # lines are added by `remember`, `!N` as what it ran
        if self.history_path is not None:
            try:
                self.history_path.parent.mkdir(parents=True, exist_ok=True)
                self.history_path.touch(exist_ok=True)
                readline.read_history_file(str(self.history_path))
                readline.write_history_file(str(self.history_path))  # trimmed to HISTORY_LENGTH
            except OSError:
                self.history_path = None
        self.lines = [readline.get_history_item(i) for i in range(1, readline.get_current_history_length() + 1)]
        readline.set_completer_delims(" \t\n|=")
        readline.set_completer(self._complete)
        doc = getattr(readline, "__doc__", "") or ""
        readline.parse_and_bind("bind ^I rl_complete" if "libedit" in doc else "tab: complete")

    def read(self) -> str | None:
        if self.interactive:
            try:
                return input(PROMPT)
            except EOFError:
                click.echo()
                return None
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def loop(self) -> int:
        if self.interactive:
            self.setup_readline()
            click.echo("invokeai shell: one pipeline per line (blank_image --width 64 | img_blur); `help`, `exit`")
        while True:
            try:
                line = self.read()
            except KeyboardInterrupt:
                click.echo()
                continue
            if line is None:
                break
            try:
                self.handle(line)
            except Exit:
                break
            except KeyboardInterrupt:
                click.echo("\ninterrupted", err=True)
        return 0 if self.interactive else self.status

    # -- one line -------------------------------------------------------------------------------
    def remember(self, line: str) -> None:
        self.lines.append(line)
        rl = self.readline
        if rl is None:
            return
        rl.add_history(line)
        if self.history_path is not None:
            try:
                rl.append_history_file(1, str(self.history_path))
            except OSError:
                pass

    def handle(self, line: str) -> int:
        """Run one line; returns its status (also folded into `self.status`)."""
        from invokeai_core.cli.pipeline import parse_line

        text = line.strip()
        if not text or text.startswith("#"):
            return 0
        status = 0
        try:
            if text.startswith("!"):
                text = self._expand_bang(text)
                click.echo(text, err=not self.interactive)
            self.remember(text)
            pipeline = parse_line(text)
            if not pipeline.segments:
                return 0
            first = pipeline.segments[0]
            name = ALIASES.get(first[0], first[0])
            if name in BUILTINS and len(pipeline.segments) == 1 and not pipeline.continues:
                getattr(self, f"do_{name}")(first[1:])
            else:
                status = self.runner.execute(pipeline)
        except Exit:
            raise
        except CliError as e:
            e.show()
            status = e.exit_code
        except click.UsageError as e:
            e.show()
            status = 2
        except click.ClickException as e:
            e.show()
            status = 1
        self.status = max(self.status, status)
        return status

    def _expand_bang(self, text: str) -> str:
        """`!N` is line N of `history`, `!!` the last line."""
        ref = text[1:].strip()
        lines = self.lines
        if ref == "!":
            index = len(lines)
        elif ref.isdigit():
            index = int(ref)
        else:
            raise CliError(f"history reference {text!r}: use !N (a line number from `history`) or !!")
        if not 1 <= index <= len(lines):
            raise CliError(f"history reference {text!r}: no line {index} (the history has {len(lines)})")
        return lines[index - 1]

    # -- built-ins ------------------------------------------------------------------------------
    def do_exit(self, args: list[str]) -> None:
        raise Exit

    def do_new(self, args: list[str]) -> None:
        self.runner.new_session()
        click.echo("new session", err=self.runner.options.as_json)  # keep --json output pure JSON lines

    def do_help(self, args: list[str]) -> None:
        from invokeai_core.cli.node_commands import node_help

        if args:
            name = ALIASES.get(args[0], args[0])
            if name in BUILTINS:
                click.echo(BUILTINS[name])
                return
            cmd = self.runner.commands.get(name)
            if cmd is None:
                from invokeai_core.cli.pipeline import unknown_command

                raise unknown_command(name, self.runner.commands.names() + list(BUILTINS))
            click.echo(node_help(self.runner.invoker.registry, name))
            return
        click.echo("A line is a pipeline of node commands: add --a 2 --b 3 | mul --link -1 value a --b 4")
        click.echo("  |                       auto-link: inputs take outputs of the previous node with the same name")
        click.echo("  --link SOURCE FIELD DEST_FIELD   SOURCE is a node id or -1 (previous node), -2, ...")
        click.echo("  --id NAME               name a node;  a line starting with '|' continues the last node")
        click.echo("\nBuilt-ins:")
        for text in BUILTINS.values():
            click.echo(f"  {text}")
        click.echo("\nNode commands (help COMMAND for options):")
        by_cat: dict[str, list[str]] = {}
        for entry in self.runner.invoker.registry.entries():
            by_cat.setdefault(entry.cls.invocation_meta.category, []).append(entry.cls.invocation_type)
        for cat in sorted(by_cat):
            click.echo(f"  {cat}: {', '.join(by_cat[cat])}")

    def do_history(self, args: list[str]) -> None:
        lines = self.lines
        if args:
            if not args[0].isdigit():
                raise CliError(f"history: N must be a number, not {args[0]!r}")
            start = max(0, len(lines) - int(args[0]))
        else:
            start = 0
        for i in range(start, len(lines)):
            click.echo(f"{i + 1:5d}  {lines[i]}")

    def do_default(self, args: list[str]) -> None:
        defaults = self.runner.defaults
        if not args:
            for k, v in sorted(defaults.items()):
                click.echo(f"{k} = {v}")
            return
        if len(args) != 2:
            raise CliError("default: give FIELD VALUE (quote a VALUE with spaces), or nothing to list the defaults")
        fname, value = args
        users = self.runner.commands.fields_named(fname)
        if not users:
            from invokeai_core.cli.node_commands import closest

            every = sorted({f for t in self.runner.commands.names() for f in (self.runner.commands.get(t) or _N).specs})
            near = closest(fname, every)
            hint = f" (did you mean: {', '.join(near)}?)" if near else ""
            raise CliError(f"default: no node type has an input named '{fname}'{hint}")
        from invokeai_core.cli.node_commands import ImageResolver

        resolver = ImageResolver(self.runner.invoker.services)  # checks image names and files, uploads nothing
        fitting = []
        problems = []
        for t in users:
            cmd = self.runner.commands.get(t)
            assert cmd is not None
            try:
                cmd.convert_text(fname, value, resolver)
                fitting.append(t)
            except ValueError as e:
                problems.append(f"{t}: {e}")
        if not fitting:
            raise CliError(f"default {fname}={value!r} fits no node type ({problems[0]})")
        defaults[fname] = value
        if self.interactive:
            click.echo(f"{fname} = {value} (for {', '.join(fitting[:6])}{', ...' if len(fitting) > 6 else ''})")

    def do_reset_default(self, args: list[str]) -> None:
        if len(args) != 1:
            raise CliError("reset_default: give one FIELD")
        if self.runner.defaults.pop(args[0], None) is None:
            raise CliError(f"reset_default: no default is set for '{args[0]}'")

    # -- completion -----------------------------------------------------------------------------
    def _complete(self, text: str, state: int) -> str | None:
        rl = self.readline
        try:
            if state == 0:
                before = rl.get_line_buffer()[: rl.get_begidx()]
                self._matches = self.completions(before, text)
            return self._matches[state] if state < len(self._matches) else None
        except Exception:  # a completer must never raise into readline
            return None

    def completions(self, before: str, text: str) -> list[str]:
        """Candidates for the word `text` being typed after `before` (the line up to that word)."""
        commands = self.runner.commands
        segment = before.rsplit("|", 1)[-1]
        words = segment.split()
        first_segment = "|" not in before
        if not words:
            names = commands.names() + (sorted([*BUILTINS, *ALIASES]) if first_segment else [])
            return [n + " " for n in names if n.startswith(text)]
        name = words[0]
        if name == "help" and len(words) == 1:
            return [n + " " for n in [*commands.names(), *BUILTINS] if n.startswith(text)]
        if name in ("default", "reset_default") and len(words) == 1:
            if name == "reset_default":
                pool = sorted(self.runner.defaults)
            else:
                pool = sorted({f for t in commands.names() for f in (commands.get(t) or _N).specs})
            return [f + " " for f in pool if f.startswith(text)]
        cmd = commands.get(name)
        if cmd is None:
            return []
        flags = cmd.option_flags()
        prev = words[-1] if words else ""
        opt = flags.get(prev)
        if opt is not None and not opt.is_flag and opt.nargs == 1 and not text.startswith("-"):
            choices = getattr(opt.type, "choices", None)
            if choices:
                return [str(c) + " " for c in choices if str(c).startswith(text)]
            return []
        if text.startswith("-") or not text:
            given = set(words[1:])
            # one long flag per option (not the `--cfg_scale` alias of `--cfg-scale`), plus `--no-x`
            longs = [[f for f in o.opts if f.startswith("--")][:1] + list(o.secondary_opts)[:1] for o in flags.values()]
            primary = {f for group in longs for f in group}
            names = sorted(
                f
                for f, o in flags.items()
                if f in primary and f.startswith("--") and not o.hidden and (f not in given or o.multiple)
            )
            return [f + " " for f in names if f.startswith(text)]
        return []


class _NoSpecs:
    specs: dict[str, Any] = {}


_N: Any = _NoSpecs()


def history_path(root: Path) -> Path:
    return root / HISTORY_FILE
