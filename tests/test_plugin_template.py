"""The plugin template, used the way a third-party node author uses it.

`invokeai plugins new` renders `invokeai_plugin_template/` into a temporary folder; the result is
pip-installed (no index, no dependencies, no build isolation: nothing is downloaded) into a throwaway
virtual environment that sees this environment's packages through a `.pth` file, so nothing is left
installed here. Then the rendered project's own tests, ruff and mypy run on it, and `invokeai plugins`,
`invokeai nodes` and `invokeai run` (of that environment) find and run its node.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import REPO, VENV_BIN, run_cli
from PIL import Image

import invokeai_core
from invokeai_core.cli.plugin_new import (
    TEMPLATE_DIR_NAME,
    TEMPLATE_ENV,
    core_requirement_bounds,
    new_command,
    plugin_names,
)

TEMPLATE = REPO / TEMPLATE_DIR_NAME
NAME = "tpl-sunset"  # -> plugin tpl_sunset, distribution invokeai-tpl-sunset, module invokeai_tpl_sunset
SLUG = "tpl_sunset"
DIST = "invokeai-tpl-sunset"
MODULE = "invokeai_tpl_sunset"
NODE = "tpl_sunset_gradient"


def _clean_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKEAI_", "PYTEST_", "MYPY"))}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template rendered by `invokeai plugins new`, as an author would start."""
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(DIST)  # the name must be free in the test environment
    out = tmp_path_factory.mktemp("authoring")
    root = tmp_path_factory.mktemp("root")
    author = ["--author", "Ada Lovelace", "--email", "ada@example.com"]
    res = run_cli("plugins", "new", NAME, "--output", str(out), *author, root=root)
    assert res.returncode == 0, res.stderr
    path = out / DIST
    assert f"created {path}{os.sep}" in res.stdout
    assert f"example node {NODE}" in res.stdout
    return path


@pytest.fixture(scope="module")
def plugin_python(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway virtual environment with the rendered plugin installed (on top of this one's packages)."""
    env_dir = tmp_path_factory.mktemp("plugin-venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    # This environment's packages: addsitedir (not a bare path) so that its .pth files (editable
    # installs) apply. invokeai-core itself is an editable install through an import hook, which mypy
    # cannot follow: it also gets a plain path entry, as an installed invokeai-core would have.
    kernel = env_dir / "kernel"
    kernel.mkdir()
    (kernel / "invokeai_core").symlink_to(Path(invokeai_core.__file__).resolve().parent, target_is_directory=True)
    (Path(purelib) / "_invokeai_test_kernel.pth").write_text(f"{kernel}\n")
    (Path(purelib) / "_invokeai_test_parent_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    res = _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
            str(project),
        ],
        cwd=env_dir,
        env=_clean_env(env_dir),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (Path(purelib) / MODULE / "nodes.py").is_file()
    return python


class InvokeaiInEnv:
    """`invokeai ...` run in the plugin's environment, with its own root folder."""

    def __init__(self, python: Path, root: Path) -> None:
        self.python = python
        self.root = root

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.python), "-m", "invokeai_core.cli.main", *args]
        return _run(command, cwd=self.root.parent, env=_clean_env(self.root, **env))


@pytest.fixture
def invokeai(plugin_python: Path, tmp_path: Path) -> InvokeaiInEnv:
    root = tmp_path / "root"
    root.mkdir()
    return InvokeaiInEnv(plugin_python, root)


# -- what is rendered -----------------------------------------------------------------------------
def test_the_rendered_distribution(project: Path) -> None:
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    proj = meta["project"]
    low, next_major = core_requirement_bounds(invokeai_core.__version__)
    assert proj["name"] == DIST
    assert proj["dependencies"] == [f"invokeai-core>={low},<{next_major}"]
    assert "Framework :: InvokeAI Core" in proj["classifiers"]
    assert proj["entry-points"]["invokeai.plugins"] == {SLUG: f"{MODULE}.hooks"}
    assert proj["authors"] == [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    for path in (
        "README.md",
        f"src/{MODULE}/__init__.py",
        f"src/{MODULE}/hooks.py",
        f"src/{MODULE}/nodes.py",
        f"src/{MODULE}/settings.py",
        f"src/{MODULE}/py.typed",
        "tests/conftest.py",
        "tests/test_nodes.py",
        ".github/workflows/ci.yml",
        ".github/workflows/publish.yml",
        ".copier-answers.yml",
        ".gitignore",
    ):
        assert (project / path).is_file(), path
    leftovers = [p for p in project.rglob("*") if p.suffix == ".jinja" or "{{" in p.name]
    assert leftovers == []
    assert f"invokeai nodes {NODE}" in (project / "README.md").read_text()


def test_the_hook_module_is_light(project: Path) -> None:
    module_level, body = (project / "src" / MODULE / "hooks.py").read_text().split("def register_invocations", 1)
    assert f"{MODULE}.nodes" not in module_level and "import nodes" not in module_level
    assert f"from {MODULE} import nodes" in body


def test_the_ci_workflow_lints_type_checks_and_tests(project: Path) -> None:
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    steps = ci["jobs"]["test"]["steps"]
    commands = "\n".join(s.get("run", "") for s in steps)
    for command in ('pip install -e ".[test]"', "ruff check .", "ruff format --check .", "mypy", "pytest"):
        assert command in commands
    assert "${{ matrix.python-version }}" in (project / ".github/workflows/ci.yml").read_text()  # not rendered
    publish = yaml.safe_load((project / ".github/workflows/publish.yml").read_text())
    assert {"build", "publish"} <= set(publish["jobs"])


def test_copier_defaults_match_this_invokeai_core() -> None:
    """`copier copy` users get the defaults of copier.yml: they must be the running version's range."""
    questions = yaml.safe_load((TEMPLATE / "copier.yml").read_text())
    low, next_major = core_requirement_bounds(invokeai_core.__version__)
    assert (questions["core_min"]["default"], questions["core_next_major"]["default"]) == (low, next_major)


def test_copier_renders_the_template_directly(tmp_path: Path) -> None:
    import copier

    copier.run_copy(str(TEMPLATE), str(tmp_path / "p"), data={"plugin_name": "direct"}, defaults=True, quiet=True)
    text = (tmp_path / "p" / "src" / "invokeai_direct" / "nodes.py").read_text()
    assert '"direct_gradient"' in text and "{{" not in text


# -- installed: its own tests, the CLI ------------------------------------------------------------
def test_the_rendered_projects_own_tests_pass(project: Path, plugin_python: Path, tmp_path: Path) -> None:
    res = _run(
        [str(plugin_python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=_clean_env(tmp_path),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    summary = res.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None and int(passed.group(1)) >= 10, summary
    assert "failed" not in summary and "error" not in summary and "skipped" not in summary, summary


def test_invokeai_plugins_lists_it(invokeai: InvokeaiInEnv) -> None:
    res = invokeai("plugins", "--json", INVOKEAI_STRICT_PLUGINS="1")
    assert res.returncode == 0, res.stderr
    info = {p["name"]: p for p in json.loads(res.stdout)}[SLUG]
    assert (info["dist"], info["version"], info["status"]) == (DIST, "0.1.0", "loaded")
    assert info["hooks"] == ["register_invocations"] and info["nodes"] == [NODE]
    table = invokeai("plugins")
    assert re.search(rf"^{SLUG}\s+{DIST}\s+0\.1\.0\s+loaded\s+register_invocations\s+1$", table.stdout, re.M)


def test_invokeai_nodes_shows_its_node(invokeai: InvokeaiInEnv) -> None:
    listing = invokeai("nodes")
    assert re.search(rf"^{NODE}\s+Tpl Sunset Gradient\s+{SLUG}\s+{SLUG}\s+1\.0\.0$", listing.stdout, re.M)
    help_text = invokeai("nodes", NODE).stdout
    assert "A linear gradient from one color to another." in help_text
    for option in ("--width", "--height", "--start-color", "--end-color", "--direction", "--bands"):
        assert option in help_text
    assert "[horizontal|vertical]" in help_text
    schema = json.loads(invokeai("nodes", NODE, "--json").stdout)
    assert schema["properties"]["start_color"]["pattern"] == "^#[0-9a-fA-F]{6}$"
    assert schema["properties"]["direction"]["ui_choice_labels"]["vertical"] == "Top to bottom"


def test_invokeai_run_runs_it(invokeai: InvokeaiInEnv) -> None:
    res = invokeai("run", f"{NODE} --width 40 --height 10 --end-color #00ff00", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["status"] == "completed" and result["errors"] == {}
    out = result["results"]["1"]
    assert (out["type"], out["width"], out["height"]) == (f"{NODE}_output", 40, 10)
    path = invokeai.root / "outputs" / "images" / out["image"]["image_name"]
    with Image.open(path) as image:
        assert image.size == (40, 10)
        assert image.getpixel((0, 5)) == (0, 0, 0) and image.getpixel((39, 5)) == (0, 255, 0)
    bad = invokeai("run", f"{NODE} --start-color red")
    assert bad.returncode == 2 and "start_color" in bad.stderr


# -- the rendered code is clean -------------------------------------------------------------------
def test_the_rendered_code_passes_ruff(project: Path, tmp_path: Path) -> None:
    ruff = str(VENV_BIN / "ruff")
    env = _clean_env(tmp_path, RUFF_CACHE_DIR=str(tmp_path / "ruff-cache"))
    for args in (["check", "."], ["format", "--check", "."]):
        res = _run([ruff, *args], cwd=project, env=env)
        assert res.returncode == 0, res.stdout + res.stderr


def test_the_rendered_code_passes_mypy(project: Path, plugin_python: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    res = _run([str(plugin_python), "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")], cwd=project, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success: no issues found in 6 source files" in res.stdout


def test_nothing_leaks_into_the_test_environment(plugin_python: Path, cli_root: Path) -> None:
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(DIST)
    assert MODULE not in sys.modules
    plugins = json.loads(run_cli("plugins", "--json", root=cli_root).stdout)
    assert SLUG not in {p["name"] for p in plugins}


# -- `invokeai plugins new`: names and errors ---------------------------------------------------
@pytest.mark.parametrize(
    ("name", "slug", "dist", "module"),
    [
        ("sunset", "sunset", "invokeai-sunset", "invokeai_sunset"),
        ("invokeai-sunset", "sunset", "invokeai-sunset", "invokeai_sunset"),
        ("My Nodes", "my_nodes", "invokeai-my-nodes", "invokeai_my_nodes"),
        ("my-nodes2", "my_nodes2", "invokeai-my-nodes2", "invokeai_my_nodes2"),
    ],
)
def test_plugin_names(name: str, slug: str, dist: str, module: str) -> None:
    names = plugin_names(name)
    assert (names.slug, names.dist, names.module, names.node) == (slug, dist, module, f"{slug}_gradient")


def _new(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(new_command, list(args), env=env)


@pytest.mark.parametrize("name", ["2fast", "_-_", "core", "invokeai-core", ""])
def test_a_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    res = _new(name, "--output", str(tmp_path))
    assert res.exit_code == 2 and "invokeai: error:" in res.output
    assert list(tmp_path.iterdir()) == []


def test_a_missing_template_engine_gets_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "copier", None)  # `import copier` raises ImportError
    res = _new("sunset", "--output", str(tmp_path))
    assert res.exit_code == 2
    assert "renders the plugin template with copier, which is not installed: pip install" in res.output
    assert list(tmp_path.iterdir()) == []


def test_an_existing_project_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "invokeai-sunset").mkdir()
    (tmp_path / "invokeai-sunset" / "mine.txt").write_text("keep me")
    res = _new("sunset", "--output", str(tmp_path))
    assert res.exit_code == 2 and "already exists and is not empty" in res.output
    assert [p.name for p in (tmp_path / "invokeai-sunset").iterdir()] == ["mine.txt"]


def test_a_missing_template_folder_is_named(tmp_path: Path) -> None:
    res = _new("sunset", "--output", str(tmp_path), "--template", str(tmp_path / "nowhere"))
    assert res.exit_code == 2 and "no plugin template at" in res.output and "nowhere" in res.output
    res = _new("sunset", "--output", str(tmp_path), env={TEMPLATE_ENV: str(tmp_path / "elsewhere")})
    assert res.exit_code == 2 and "elsewhere" in res.output and TEMPLATE_ENV in res.output


def test_invalid_answers_are_refused_by_the_template(tmp_path: Path) -> None:
    res = _new("sunset", "--output", str(tmp_path), "--author", 'Ada "the countess"')
    assert res.exit_code == 2 and "no double quotes or backslashes" in res.output
    assert not (tmp_path / "invokeai-sunset").exists()


def test_plugins_without_a_subcommand_still_lists_plugins(cli_root: Path) -> None:
    res = run_cli("plugins", root=cli_root)
    assert res.returncode == 0 and res.stdout.startswith("NAME ")
    assert "new" in run_cli("plugins", "--help", root=cli_root).stdout


def test_an_installed_wheel_renders_the_template_without_a_source_tree(tmp_path: Path) -> None:
    """A node author who only `pip install`ed invokeai-core: the template ships inside the wheel."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # the kernel's files only: no invokeai_plugin_template/ beside the package later
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in tracked.splitlines():
        if rel.split("/")[0] in ("invokeai_core", "invokeai_plugin_template") or rel in ("pyproject.toml", "README.md"):
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / rel).is_symlink():
                target.symlink_to(os.readlink(REPO / rel))
            else:
                shutil.copy2(REPO / rel, target)
    build = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)]
    res = _run([sys.executable, "-m", *build], cwd=tmp_path, env=_clean_env(tmp_path))
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("invokeai_core-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert not (site / TEMPLATE_DIR_NAME).exists()
    code = (
        "import sys, invokeai_core; from invokeai_core.cli.main import main; "
        "print('KERNEL', invokeai_core.__file__, file=sys.stderr); main()"
    )
    out = tmp_path / "out"
    env = _clean_env(tmp_path, PYTHONPATH=str(site))
    res = _run(
        [sys.executable, "-c", code, "plugins", "new", "wheel-made", "--output", str(out)], cwd=tmp_path, env=env
    )
    assert res.returncode == 0, res.stderr
    assert f"KERNEL {site}" in res.stderr  # the wheel's invokeai_core, not this checkout's
    project = out / "invokeai-wheel-made"
    for rel in ("pyproject.toml", ".gitignore", ".github/workflows/ci.yml", "src/invokeai_wheel_made/nodes.py"):
        assert (project / rel).is_file(), rel
