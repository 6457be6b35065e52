"""The shell of `invokeai run` (no pipeline): lines piped on stdin, and a real terminal through a pty
(prompt, readline history kept in the root folder, tab completion, progress bars)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import INVOKEAI, run_cli, write_fake_plugin

ENV = {"INVOKEAI_LOAD_PLUGINS": "nodes,testpack"}


def shell(root: Path, *lines: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return run_cli("run", *args, root=root, env=ENV, input="".join(line + "\n" for line in lines))


# -- stdin (not a terminal) -----------------------------------------------------------------------
def test_lines_share_one_session_and_minus_one_reaches_the_previous_line(cli_root: Path) -> None:
    res = shell(
        cli_root,
        "add --a 2 --b 3",
        "mul --link -1 value a --b 4",  # -1: the last node of the previous line
        "add --link 1 value a --link -1 value b",  # by id, and relative
        "| tp_const",  # a line starting with '|' auto-links from the last node (int -> float)
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "1 (add): value=5",
        "2 (mul): value=20",
        "3 (add): value=25",
        "4 (tp_const): value=25.0",
    ]
    assert "invoke>" not in res.stdout  # no prompt when stdin is not a terminal


def test_defaults_apply_to_later_nodes_until_reset(cli_root: Path) -> None:
    res = shell(
        cli_root,
        "default b 10",
        "add --a 1",  # b from the default
        "mul --a 3 --b 2",  # an explicit option wins over a default
        "tp_const --value 4 | tp_scale",  # `b` is not a field of these: untouched
        "default factor 3",
        "tp_const --value 4 | tp_scale",  # an auto-link wins over a default (value), the default sets factor
        "default",
        "reset_default b",
        "add --a 1",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "1 (add): value=11",
        "2 (mul): value=6",
        "3 (tp_const): value=4.0",
        "4 (tp_scale): value=8.0",
        "5 (tp_const): value=4.0",
        "6 (tp_scale): value=12.0",
        "b = 10",
        "factor = 3",
        "7 (add): value=1",
    ]


def test_an_image_default_takes_a_file(tmp_path: Path, cli_root: Path) -> None:
    from PIL import Image
    from test_cli_pipeline import CLI_NODES

    site = tmp_path / "site"
    write_fake_plugin(site, "invokeai-clix", "clix", "invokeai_clix", CLI_NODES)
    src = tmp_path / "in.png"
    Image.new("RGB", (12, 8), (0, 90, 0)).save(src)
    env = {**ENV, "INVOKEAI_LOAD_PLUGINS": "nodes,testpack,clix", "PYTHONPATH": _pythonpath(site)}
    lines = [f"default image {src}", "clix_blur --radius 1", "clix_blur --radius 3", "default image /no/such.png"]
    res = run_cli("run", root=cli_root, env=env, input="\n".join(lines) + "\n")
    assert res.returncode == 2  # the last default
    out = res.stdout.splitlines()
    assert out[0].startswith("1 (clix_blur): image=image ") and out[0].endswith("width=12, height=8")
    assert out[1].startswith("2 (clix_blur): ")
    assert "default image='/no/such.png' fits no node type" in res.stderr
    assert "neither an image file nor the name of a stored image" in res.stderr


def _pythonpath(site: Path) -> str:
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


def test_bad_defaults_are_refused(cli_root: Path) -> None:
    res = shell(cli_root, "default facter 10", "default b ten", "reset_default b", "add --a 1")
    assert res.returncode == 2
    err = res.stderr.splitlines()
    assert "no node type has an input named 'facter' (did you mean: factor?)" in err[0]
    assert "default b='ten' fits no node type" in err[1]
    assert "no default is set for 'b'" in err[2]
    assert res.stdout == "1 (add): value=1\n"


def test_history_bang_new_and_exit(cli_root: Path) -> None:
    res = shell(
        cli_root,
        "add --a 1 --b 1",
        "# a comment is not history",
        "mul --link -1 value a --b 5",
        "history",
        "!2",  # runs line 2 again: links to the node before it
        "history 2",
        "new",
        "add --a 7",  # ids restart in the new session
        "exit",
        "add --a 100",  # never read
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "1 (add): value=2",
        "2 (mul): value=10",
        "    1  add --a 1 --b 1",
        "    2  mul --link -1 value a --b 5",
        "    3  history",
        "3 (mul): value=50",
        "    4  mul --link -1 value a --b 5",
        "    5  history 2",
        "new session",
        "1 (add): value=7",
    ]
    assert "mul --link -1 value a --b 5" in res.stderr  # what !2 ran


def test_errors_keep_the_shell_going_and_set_the_exit_status(cli_root: Path) -> None:
    res = shell(cli_root, "ad --a 1", "add --c 1", "add --a 1", "mul --link -5 value a", "tp_fail", "add")
    assert res.returncode == 2
    assert res.stdout.splitlines()[0] == "1 (add): value=1"
    assert "unknown command 'ad' (did you mean: add" in res.stderr
    assert "No such option '--c'" in res.stderr and "Usage: add [OPTIONS]" in res.stderr
    assert "no node 5 back" in res.stderr
    assert "2: error: RuntimeError: boom" in res.stderr
    # said once at the failure, and again for each line the failed session refuses
    assert "failed: later lines are refused until `new` starts a fresh session" in res.stderr
    assert "failed, so it takes no more lines; type `new` to start a fresh session" in res.stderr
    failed_only = shell(cli_root, "tp_fail")
    assert failed_only.returncode == 1


def test_help_lists_commands_and_shows_one(cli_root: Path) -> None:
    res = shell(cli_root, "help", "help add", "help default", "add --help", "help nope")
    text = res.stdout
    assert "Built-ins:" in text and "default FIELD VALUE" in text and "math: " in text and "add" in text
    assert text.count("add: Add Integers") == 2 and "Usage: add [OPTIONS]" in text
    assert "unknown command 'nope'" in res.stderr and res.returncode == 2


def test_json_lines(cli_root: Path) -> None:
    res = shell(cli_root, "add --a 2 --b 3", "mul --link -1 value a --b 2", args=("--json",))
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first["results"] == {"1": {"type": "integer_output", "value": 5}}
    assert second["results"] == {"2": {"type": "integer_output", "value": 10}}
    assert first["session_id"] == second["session_id"]


def test_run_with_empty_stdin_is_an_empty_shell(cli_root: Path) -> None:
    res = shell(cli_root)
    assert res.returncode == 0 and res.stdout == "" and res.stderr == ""


def test_completions(invokeai_register_nodes: Any, invokeai_invoker: Any) -> None:
    from typing import Literal

    from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation
    from invokeai_core.cli.runner import CliSession, RunOptions
    from invokeai_core.cli.shell import Shell
    from invokeai_core.invocations.flow import CollectInvocationOutput

    @invocation("cli_smudge", version="1.0.0")
    class Smudge(BaseInvocation):
        blur_type: Literal["gaussian", "box"] = InputField(default="box", description="kind")
        sharp: bool = InputField(default=False, description="flag")

        def invoke(self, context: InvocationContext) -> CollectInvocationOutput:
            return CollectInvocationOutput(collection=[])

    invokeai_register_nodes(Smudge)

    sh = Shell(CliSession(invokeai_invoker, RunOptions()), history_path=None, interactive=False)
    assert "tp_const " in sh.completions("", "tp_c") and "tp_scale " not in sh.completions("", "tp_c")
    assert "reset_default " in sh.completions("", "res")
    assert sh.completions("tp_const | ", "tp_s") == ["tp_scale ", "tp_sleep "]
    assert sh.completions("tp_const | ", "res") == []  # built-ins only start a line
    assert sh.completions("tp_scale ", "--f") == ["--factor "]
    assert "--link " in sh.completions("tp_scale --factor 2 ", "--") and "--factor " not in sh.completions(
        "tp_scale --factor 2 ", "--"
    )
    assert sh.completions("iterate ", "") == ["--collection ", "--help ", "--id ", "--link "]
    assert sh.completions("help ", "tp_sl") == ["tp_sleep "]
    assert sh.completions("default ", "fac") == ["factor "]
    assert sh.completions("cli_smudge ", "--bl") == ["--blur-type "]  # not its --blur_type alias
    assert sh.completions("cli_smudge --blur_type ", "") == ["gaussian ", "box "]  # choices, either spelling
    assert sh.completions("cli_smudge --blur-type ", "") == ["gaussian ", "box "]
    assert sh.completions("cli_smudge ", "--") == [
        "--blur-type ",
        "--help ",
        "--id ",
        "--link ",
        "--no-sharp ",
        "--sharp ",
    ]


# -- a real terminal ------------------------------------------------------------------------------
class Terminal:
    """`invokeai run` on a pseudo-terminal, driven like a user would."""

    def __init__(self, root: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
        env.update(ENV, INVOKEAI_ROOT=str(root), TERM="xterm", COLUMNS="100", LINES="30")
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [INVOKEAI, "run"], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, start_new_session=True
        )
        os.close(slave)
        self.buf = b""

    def expect(self, needle: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        want = needle.encode()
        while want not in self.buf:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.buf[-800:]!r}")
            try:
                data = os.read(self.master, 4096)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"the shell exited waiting for {needle!r}; got {self.buf[-800:]!r}")
            self.buf += data
        i = self.buf.index(want) + len(want)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def line(self, text: str) -> str:
        """Type a line, return what appeared until the next prompt."""
        self.send(text + "\r")
        return self.expect("invoke> ")

    def close(self) -> int:
        try:
            self.send("exit\r")
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


@pytest.fixture
def terminal(cli_root: Path) -> Any:
    started: list[Terminal] = []

    def start() -> Terminal:
        t = Terminal(cli_root)
        started.append(t)
        t.expect("invoke> ")
        return t

    yield start
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()


def test_terminal_prompt_history_file_and_recall(cli_root: Path, terminal: Any) -> None:
    t = terminal()
    assert "2 (mul): value=" not in t.line("add --a 2 --b 3")
    assert "2 (mul): value=20" in t.line("mul --link -1 value a --b 4")
    assert t.close() == 0
    history = (cli_root / "cli_history").read_text().splitlines()
    assert history[-3:] == ["add --a 2 --b 3", "mul --link -1 value a --b 4", "exit"]

    t = terminal()  # a new shell: the history is back, a new session
    out = t.line("history 4")
    assert "add --a 2 --b 3" in out and "mul --link -1 value a --b 4" in out
    assert "1 (add): value=2" in t.line("add --a 1 --b 1")
    assert "2 (add): value=2" in t.line("\x1b[A")  # up arrow: the last line again
    assert t.close() == 0


def test_terminal_tab_completion(terminal: Any) -> None:
    t = terminal()
    out = t.line("tp_con\t--val\t 5")  # tp_const --value 5
    assert "1 (tp_const): value=5.0" in out
    assert t.close() == 0


def test_terminal_shows_a_progress_bar(terminal: Any) -> None:
    t = terminal()
    out = t.line("tp_sleep --seconds 0.5 --value 1")
    assert "1 tp_sleep  [" in out and "/50" in out and "ETA" in out
    assert "50/50  100%" in out
    assert "1 (tp_sleep): value=1.0" in out
    assert t.close() == 0


def test_terminal_interrupt_cancels_the_running_line(terminal: Any) -> None:
    import signal

    t = terminal()
    t.send("tp_sleep --seconds 30\r")
    t.expect("1 tp_sleep  [")  # running, with a progress bar
    os.kill(t.proc.pid, signal.SIGINT)
    out = t.expect("invoke> ")
    assert "canceled" in out
    assert "canceled, so it takes no more lines; type `new`" in t.line("add --a 1")
    t.line("new")
    assert "1 (add): value=1" in t.line("add --a 1")
    assert t.close() == 0


def test_every_cli_run_is_a_stored_session(cli_root: Path) -> None:
    """Pipelines, shell lines and graph files all run in sessions kept by the configured `sessions`
    store (SQLite in the root folder by default), so `invokeai sessions show` finds them later."""
    lines = shell(cli_root, "add --a 2 --b 3", "mul --link -1 value a --b 4", "new", "add --a 9", args=("--json",))
    first, second, third = (json.loads(ln) for ln in lines.stdout.splitlines())
    assert first["session_id"] == second["session_id"] != third["session_id"]
    pipeline = run_cli("run", "integer --value 3 | tp_scale --factor 2", "--json", root=cli_root, env=ENV)
    graph = {"nodes": {"x": {"id": "x", "type": "tp_const", "value": 1.5}}, "edges": []}
    from_file = run_cli("run", "-f", "-", "--json", root=cli_root, env=ENV, input=json.dumps(graph))

    def stored(session_id: str) -> dict[str, Any]:
        res = run_cli("sessions", "show", session_id, "--json", root=cli_root, env=ENV)
        assert res.returncode == 0, res.stderr
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    shell_session = stored(first["session_id"])
    assert shell_session["status"] == "completed"
    assert {k: v["value"] for k, v in shell_session["results"].items()} == {"1": 5, "2": 20}
    edges = shell_session["graph"]["edges"]
    assert edges == [{"source": {"node_id": "1", "field": "value"}, "destination": {"node_id": "2", "field": "a"}}]
    assert stored(third["session_id"])["results"]["1"]["value"] == 9
    assert stored(json.loads(pipeline.stdout)["session_id"])["results"]["2"]["value"] == 6.0
    assert stored(json.loads(from_file.stdout)["session_id"])["results"]["x"]["value"] == 1.5
