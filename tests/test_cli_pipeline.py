"""`invokeai run PIPELINE`: node commands generated from metadata, auto-links, explicit links, images.

Subprocess tests run the real executable (`conftest.run_cli`) with an isolated root folder; a small
plugin written into a temporary site folder adds nodes with every kind of option the CLI maps
(choices, enums, flags, lists, constrained values, images, progress).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_fake_plugin

CLI_NODES = '''
import time
from enum import Enum
from typing import Literal

from invokeai_core import (BaseInvocation, BaseInvocationOutput, ImageField, InputField, InvocationContext,
                           OutputField, hookimpl, invocation, invocation_output)


class Flavor(str, Enum):
    vanilla = "vanilla"
    mint = "mint"


@invocation_output("clix_text_output")
class TextOut(BaseInvocationOutput):
    text: str = OutputField(description="Everything, as text")


@invocation("clix_echo", title="Echo", category="clitest", version="1.0.0")
class Echo(BaseInvocation):
    """Echoes its typed inputs."""

    mode: Literal["fast", "slow"] = InputField(default="fast", description="How fast to go")
    flavor: Flavor = InputField(default=Flavor.vanilla, description="Which flavor")
    loud: bool = InputField(default=False, description="Shout it")
    counts: list[int] = InputField(default=[], description="Some numbers")
    label: str = InputField(default="", max_length=8, description="A short label")
    ratio: float = InputField(default=0.5, ge=0, le=1, description="A ratio")
    text: str = InputField(default="", description="Text passed along")
    join_with: str = InputField(default="/", max_length=1, description="The separator")
    upper_case: bool = InputField(default=False, description="Upper-case the result")

    def invoke(self, context: InvocationContext) -> TextOut:
        parts = [self.mode, self.flavor.value, str(self.loud), str(self.counts), self.label, str(self.ratio), self.text]
        text = self.join_with.join(parts)
        return TextOut(text=text.upper() if self.upper_case else text)


@invocation_output("clix_image_output")
class ImageOut(BaseInvocationOutput):
    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="Width")
    height: int = OutputField(description="Height")


@invocation("clix_blur", title="Blur", category="clitest", version="1.0.0")
class Blur(BaseInvocation):
    """Blurs an image."""

    image: ImageField = InputField(description="The image to blur")
    radius: float = InputField(default=2.0, ge=0, description="Blur radius")

    def invoke(self, context: InvocationContext) -> ImageOut:
        from PIL import ImageFilter

        img = context.images.load(self.image).filter(ImageFilter.GaussianBlur(self.radius))
        record = context.images.save(img, is_intermediate=False)
        return ImageOut(image=record.field, width=img.width, height=img.height)


@invocation("clix_steps", title="Steps", category="clitest", version="1.0.0", use_cache=False)
class Steps(BaseInvocation):
    """Works in steps, reporting progress."""

    steps: int = InputField(default=20, ge=1, description="How many steps")
    delay: float = InputField(default=0.02, ge=0, description="Seconds per step")

    def invoke(self, context: InvocationContext) -> TextOut:
        for i in range(self.steps):
            time.sleep(self.delay)
            context.progress(i + 1, self.steps, "working")
        return TextOut(text="done")


@hookimpl
def register_invocations(register):
    for cls in (Echo, Blur, Steps):
        register(cls)
'''


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `run_cli` with the test plugin `clix` installed (in a site folder)."""
    site = tmp_path / "site"
    write_fake_plugin(site, "invokeai-clix", "clix", "invokeai_clix", CLI_NODES)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "INVOKEAI_LOAD_PLUGINS": "nodes,testpack,clix"}


def run_json(*args: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    res = run_cli("run", *args, "--json", root=root, env=env)
    assert res.returncode == 0, (res.stdout, res.stderr)
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def values(data: dict[str, Any], field: str = "value") -> dict[str, Any]:
    return {k: v[field] for k, v in data["results"].items() if field in v}


def images_in(root: Path) -> list[Path]:
    folder = root / "outputs" / "images"
    return sorted(folder.glob("*.png")) if folder.exists() else []


# -- pipelines and auto-linking -------------------------------------------------------------------
def test_three_segment_pipeline_auto_links_by_name_and_type(cli_root: Path, cli_env: dict[str, str]) -> None:
    # integer.value (int) -> tp_scale.value (float, required) -> round_float.value (float)
    res = run_cli("run", "integer --value 3 | tp_scale --factor 2.5 | round_float", root=cli_root, env=cli_env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:3] == ["1 (integer): value=3", "2 (tp_scale): value=7.5", "3 (round_float): value=8.0"]
    assert lines[3].startswith("session ") and lines[3].endswith(": completed")
    assert "note:" not in res.stderr


def test_the_same_pipeline_as_separate_words(cli_root: Path, cli_env: dict[str, str]) -> None:
    words = ["integer", "--value", "3", "|", "tp_scale", "--factor", "2.5", "|", "round_float"]
    data = run_json(*words, root=cli_root, env=cli_env)
    assert values(data) == {"1": 3, "2": 7.5, "3": 8.0}


def test_json_prints_the_whole_session_result(cli_root: Path, cli_env: dict[str, str]) -> None:
    res = run_cli("run", "add --a 2 --b 3 | mul --link -1 value a --b 4", "--json", root=cli_root, env=cli_env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert set(data) == {"session_id", "status", "results", "errors"}
    assert data["status"] == "completed" and data["errors"] == {}
    assert data["results"] == {
        "1": {"type": "integer_output", "value": 5},
        "2": {"type": "integer_output", "value": 20},
    }
    # --json before the pipeline, and inside the words form, mean the same
    before = run_cli("run", "--json", "add --a 2 --b 3", root=cli_root, env=cli_env)
    assert json.loads(before.stdout)["results"]["1"]["value"] == 5
    inside = run_cli("run", "add", "--a", "2", "--json", "|", "mul", "--b", "3", root=cli_root, env=cli_env)
    assert inside.returncode == 0, inside.stderr
    assert values(json.loads(inside.stdout)) == {"1": 2, "2": 0}


def test_an_explicit_option_wins_over_an_auto_link(cli_root: Path, cli_env: dict[str, str]) -> None:
    data = run_json("integer --value 3 | tp_scale --value 10 --factor 2", root=cli_root, env=cli_env)
    assert values(data) == {"1": 3, "2": 20.0}


def test_a_type_incompatible_auto_link_is_skipped(cli_root: Path, cli_env: dict[str, str]) -> None:
    # float.value (float) does not fit integer.value (int): not linked, the default stays
    res = run_cli("run", "float --value 2.5 | integer", "--json", root=cli_root, env=cli_env)
    assert res.returncode == 0, res.stderr
    assert values(json.loads(res.stdout)) == {"1": 2.5, "2": 0}
    assert "output 'value' (float) does not fit input 'value' (int)" in res.stderr
    # the other way round is compatible (int -> float)
    assert values(run_json("integer --value 3 | float", root=cli_root, env=cli_env)) == {"1": 3, "2": 3.0}


def test_a_pipe_that_links_nothing_says_so(cli_root: Path, cli_env: dict[str, str]) -> None:
    res = run_cli("run", "add --a 2 --b 3 | mul --b 4", root=cli_root, env=cli_env)
    assert res.returncode == 0
    assert "2 (mul): value=0" in res.stdout
    assert "nothing links 'add' (node 1) to 'mul' (node 2)" in res.stderr and "--link -1" in res.stderr


# -- explicit links -------------------------------------------------------------------------------
def test_explicit_link_to_the_node_before_the_previous(cli_root: Path, cli_env: dict[str, str]) -> None:
    data = run_json("integer --value 7 | integer --value 100 | add --link -2 value a --b 1", root=cli_root, env=cli_env)
    assert values(data) == {"1": 7, "2": 100, "3": 8}


def test_explicit_link_replaces_the_auto_link_into_the_same_input(cli_root: Path, cli_env: dict[str, str]) -> None:
    # without --link, tp_scale.value would be auto-linked from node 2 (2.0)
    auto = run_json("tp_const --value 1 | tp_const --value 2 | tp_scale --factor 10", root=cli_root, env=cli_env)
    assert values(auto)["3"] == 20.0
    data = run_json(
        "tp_const --value 1 | tp_const --value 2 | tp_scale --link -2 value value --factor 10",
        root=cli_root,
        env=cli_env,
    )
    assert values(data)["3"] == 10.0


def test_link_by_node_id(cli_root: Path, cli_env: dict[str, str]) -> None:
    data = run_json(
        "integer --value 4 --id four | integer --value 5 | mul --link four value a --link -1 value b",
        root=cli_root,
        env=cli_env,
    )
    assert values(data) == {"four": 4, "2": 5, "3": 20}


def test_iterate_and_collect_through_links(cli_root: Path, cli_env: dict[str, str]) -> None:
    data = run_json(
        "range --stop 3 | iterate | mul --link -1 item a --b 10 | collect --link -1 value item",
        root=cli_root,
        env=cli_env,
    )
    assert data["results"]["4"]["collection"] == [0, 10, 20]
    assert [r["value"] for r in data["results"]["3"]] == [0, 10, 20]


# -- typed options and help -----------------------------------------------------------------------
def test_options_are_typed_from_the_fields(cli_root: Path, cli_env: dict[str, str]) -> None:
    data = run_json(
        "clix_echo --mode slow --flavor mint --loud --counts 1 --counts 2 --label hi --ratio 0.25 --text 'a b|c'",
        root=cli_root,
        env=cli_env,
    )
    assert data["results"]["1"]["text"] == "slow/mint/True/[1, 2]/hi/0.25/a b|c"
    defaults = run_json("clix_echo", root=cli_root, env=cli_env)
    assert defaults["results"]["1"]["text"] == "fast/vanilla/False/[]//0.5/"
    # options are spelled with dashes, and also answer to the field's own name
    for words in ("--join-with + --upper-case", "--join_with + --upper_case", "--join-with + --upper_case"):
        assert run_json(f"clix_echo {words}", root=cli_root, env=cli_env)["results"]["1"]["text"] == (
            "FAST+VANILLA+FALSE+[]++0.5+"
        )


def test_node_help_is_generated_and_matches_invokeai_nodes(cli_root: Path, cli_env: dict[str, str]) -> None:
    res = run_cli("run", "clix_echo --help", root=cli_root, env=cli_env)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert text.startswith("clix_echo: Echo ") and "Echoes its typed inputs." in text
    assert "--mode [fast|slow]" in text and "How fast to go" in text and "[default: fast]" in text
    assert "--flavor [vanilla|mint]" in text and "--loud / --no-loud" in text
    assert "--counts INTEGER" in text and "repeat the option" in text
    assert "--ratio FLOAT" in text and "[default: 0.5]" in text
    assert "--join-with TEXT" in text and "--upper-case / --no-upper-case" in text and "_with" not in text
    assert "--link SOURCE FIELD DEST_FIELD" in text and "Outputs (clix_text_output):" in text
    nodes = run_cli("nodes", "clix_echo", root=cli_root, env=cli_env)
    assert nodes.returncode == 0
    assert nodes.stdout == res.stdout.replace("Usage: invokeai run clix_echo", "Usage: clix_echo")
    blur = " ".join(run_cli("nodes", "clix_blur", root=cli_root, env=cli_env).stdout.split())
    assert "--image IMAGE" in blur and "an image name or a file path" in blur and "[required unless linked]" in blur


# -- images ---------------------------------------------------------------------------------------
def test_image_pipeline_saves_prints_and_exports(tmp_path: Path, cli_root: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "exported"
    res = run_cli(
        "run",
        "tp_gradient --width 64 --height 32 | clix_blur --radius 2",
        "--out",
        str(out),
        root=cli_root,
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("2 (clix_blur): "))
    name = line.split("image=image ")[1].split(" ")[0]
    path = Path(line.split("(", 2)[2].split(")")[0])
    assert path.is_file() and path.name == name and path.parent == cli_root / "outputs" / "images"
    from PIL import Image

    with Image.open(path) as img:
        assert img.size == (64, 32)
    exported = sorted(p.name for p in out.glob("*.png"))
    assert name in exported and len(exported) == 2  # the gradient and the blurred image
    assert f"exported {out / name}" in res.stdout


def test_an_image_input_takes_a_file_path_or_an_image_name(
    tmp_path: Path, cli_root: Path, cli_env: dict[str, str]
) -> None:
    from PIL import Image

    src = tmp_path / "input.png"
    Image.new("RGB", (20, 10), (200, 10, 10)).save(src)
    data = run_json("clix_blur", "--image", str(src), "--radius", "1", root=cli_root, env=cli_env)
    assert data["results"]["1"]["width"] == 20 and data["results"]["1"]["height"] == 10
    uploaded = {p.name for p in images_in(cli_root)}
    assert len(uploaded) == 2  # the upload and the blurred image
    blurred = data["results"]["1"]["image"]["image_name"]
    # a stored image is found by its name (here in a later process)
    again = run_json("clix_blur", "--image", blurred, "--radius", "1", root=cli_root, env=cli_env)
    assert again["results"]["1"]["width"] == 20


def test_image_nodes_pipeline_writes_a_png(cli_root: Path, cli_env: dict[str, str]) -> None:
    """invokeai-nodes' image operations, end to end: auto-linked `image` outputs into `image` inputs."""
    res = run_cli(
        "run",
        "blank_image --width 64 --height 64 | img_blur --radius 2 | save_image",
        "--json",
        root=cli_root,
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    name = data["results"]["3"]["image"]["image_name"]
    path = cli_root / "outputs" / "images" / name
    assert path.is_file()
    from PIL import Image

    with Image.open(path) as img:
        assert img.size == (64, 64)


# -- bad input ------------------------------------------------------------------------------------
def assert_bad_input(res: Any, *needles: str, one_line: bool = True) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    if one_line:
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("invokeai: error: "), res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def test_unknown_command_is_one_line_with_the_closest_names(cli_root: Path, cli_env: dict[str, str]) -> None:
    res = run_cli("run", "tp_gradient | ad --a 1", root=cli_root, env=cli_env)
    assert_bad_input(res, "unknown command 'ad'", "did you mean", "add")
    assert images_in(cli_root) == []


def test_unknown_option_and_bad_values_are_click_usage_errors(cli_root: Path, cli_env: dict[str, str]) -> None:
    cases = {
        "tp_gradient | add --c 1": ["No such option", "--c", "Usage: invokeai run add"],
        "tp_gradient | add --a two": ["Invalid value for '--a'", "'two' is not a valid integer"],
        "tp_gradient | clix_echo --mode medium": ["Invalid value for '--mode'", "medium"],
        "tp_gradient | clix_echo --ratio 1.5": ["Invalid value for '--ratio'", "less than or equal to 1"],
        "tp_gradient | clix_echo --label waytoolongforit": ["Invalid value for '--label'", "at most 8"],
        "tp_gradient | clix_blur --image /no/such/file.png": ["Invalid value for '--image'", "neither an image file"],
    }
    for pipeline, needles in cases.items():
        res = run_cli("run", pipeline, root=cli_root, env=cli_env)
        assert_bad_input(res, *needles, one_line=False)
        assert "Error:" in res.stderr
    assert images_in(cli_root) == []  # tp_gradient never ran


def test_bad_links_are_one_line_naming_both_ends(cli_root: Path, cli_env: dict[str, str]) -> None:
    cases = {
        "tp_gradient | add --link 9 value a": ["cannot link 9.value -> 2.a", "no node '9'"],
        "tp_gradient | add --link -3 value a": ["cannot link -3.value -> 2.a", "no node 3 back"],
        "tp_gradient | add --link -1 value a": ["1.value (tp_gradient) -> 2.a (add)", "no output 'value'"],
        "tp_gradient | add --link -1 width c": ["1.width (tp_gradient) -> 2.c (add)", "no input 'c'"],
        "tp_gradient | tp_const | add --link -1 value a": [
            "2.value (tp_const) -> 3.a (add)",
            "incompatible types (float cannot feed int)",
        ],
    }
    for pipeline, needles in cases.items():
        assert_bad_input(run_cli("run", pipeline, root=cli_root, env=cli_env), *needles)
    assert images_in(cli_root) == []


def test_other_bad_pipelines_exit_2(cli_root: Path, cli_env: dict[str, str]) -> None:
    assert_bad_input(run_cli("run", "tp_gradient | tp_scale", root=cli_root, env=cli_env), "'value'", "required")
    assert_bad_input(run_cli("run", "add | | mul", root=cli_root, env=cli_env), "empty command")
    assert_bad_input(run_cli("run", "string --value 'open", root=cli_root, env=cli_env), "unclosed")
    assert_bad_input(run_cli("run", "add --a 1 --link -1 value a", root=cli_root, env=cli_env), "no node 1 back")
    assert_bad_input(
        run_cli("run", "integer | add --a 1 --link -1 value a", root=cli_root, env=cli_env), "both as --a and by --link"
    )
    assert_bad_input(run_cli("run", "add --id x | mul --id x", root=cli_root, env=cli_env), "--id 'x' is already used")
    assert_bad_input(
        run_cli("run", "-f", "g.json", "add", root=cli_root, env=cli_env),
        "give one of a pipeline, -f FILE, --from-image FILE.png or --workflow ID",
    )


def test_a_failing_node_exits_1(cli_root: Path, cli_env: dict[str, str]) -> None:
    res = run_cli("run", "tp_fail --message nope", root=cli_root, env=cli_env)
    assert res.returncode == 1 and "1: error: RuntimeError: nope" in res.stderr and ": failed" in res.stdout


# -- in process: stored sessions, progress --------------------------------------------------------
def test_every_run_is_a_stored_session(invokeai_invoker: Any) -> None:
    from invokeai_core.cli.pipeline import parse_line
    from invokeai_core.cli.runner import CliSession, RunOptions

    runner = CliSession(invokeai_invoker, RunOptions(progress=False))
    assert runner.execute(parse_line("tp_const --value 2 | tp_scale --factor 3")) == 0
    assert runner.execute(parse_line("tp_scale --link -1 value value --factor 10")) == 0
    stored = invokeai_invoker.services.sessions.get(runner.session_id)
    assert list(stored.graph.nodes) == ["1", "2", "3"]
    assert stored.status == "completed" and stored.outputs_of("3")[0].value == 60.0
    assert [(e.source.node_id, e.destination.node_id) for e in stored.graph.edges] == [("1", "2"), ("2", "3")]


def test_progress_display_draws_steps_and_eta() -> None:
    import io

    from invokeai_core.cli.progress import ProgressDisplay, render_bar
    from invokeai_core.events import InProcessEventBus, InvocationProgressEvent, InvocationStartedEvent

    now = [100.0]
    stream = io.StringIO()
    bus = InProcessEventBus()
    display = ProgressDisplay(stream, interval=0.0, clock=lambda: now[0]).attach(bus, "s1")
    common = {"session_id": "s1", "node_id": "3", "source_node_id": "3", "invocation_type": "denoise"}
    bus.emit(InvocationStartedEvent(**common))
    for step in (1, 2, 3):
        now[0] += 1.0
        bus.emit(InvocationProgressEvent(**common, step=step, total=10))
    bus.emit(InvocationProgressEvent(**{**common, "session_id": "other"}, step=9, total=10))  # not ours
    text = stream.getvalue()
    assert "3 denoise" in text and "3/10" in text and "30%" in text and "ETA 0:07" in text
    assert "9/10" not in text
    display.detach()
    assert stream.getvalue().endswith("\r\x1b[2K")
    line = render_bar("1 x", 5, 10, 65.0, 3725.0, 80)
    assert "[" in line and "5/10" in line and "1:05" in line and "ETA 1:02:05" in line and len(line) < 80
