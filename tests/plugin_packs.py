"""Real wheels and throwaway environments for the tests of `invokeai plugins install`.

Why a throwaway environment per test: installing and uninstalling in the project's own `.venv`
would leave packs behind when a test fails half-way, and other tests list the installed plugins.
`python -m venv --without-pip` makes one in a few milliseconds; a `.pth` line adds the project's
site-packages after its own (with `site.addsitedir`, so editable installs work), so invokeai-core,
the bundled plugins and pip itself are all importable while everything pip installs goes into the
throwaway folder and disappears with it. (`--system-site-packages` would add the *base*
interpreter's packages, not the project venv's.)

The wheels are built once per session with `pip wheel --no-deps --no-build-isolation` (setuptools is
in the project venv, nothing is downloaded) and installed with `--no-index --find-links`:

| wheel | what |
|---|---|
| `tp-dep` 1.0 and 2.0 | a plain library |
| `invokeai-tp-pin` 1.0 | a node pack that requires `tp-dep>=2` |
| `invokeai-tp-good` 1.0 | a compatible node pack (`tp-dep>=2`, `invokeai-core>=0.1,<1`) |
| `invokeai-tp-bad` 1.0 | a node pack that wants `tp-dep<2`: installing it would downgrade tp-dep |
| `invokeai-tp-incompat` 1.0 | a node pack that requires `invokeai-core>=99` |
| `invokeai-tp-torchy` 1.0 + `torch` 0.0.1 | a node pack that pins a fake torch (a downgrade of the real one) |
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

PACKS: dict[str, tuple[str, list[str], str | None]] = {
    # distribution: (version, requirements, plugin name or None for a plain library)
    "tp-dep==1.0": ("1.0", [], None),
    "tp-dep==2.0": ("2.0", [], None),
    "torch": ("0.0.1", [], None),
    "invokeai-tp-pin": ("1.0", ["invokeai-core>=0.1,<1", "tp-dep>=2"], "tp_pin"),
    "invokeai-tp-good": ("1.0", ["invokeai-core>=0.1,<1", "tp-dep>=2"], "tp_good"),
    "invokeai-tp-bad": ("1.0", ["invokeai-core>=0.1,<1", "tp-dep<2"], "tp_bad"),
    "invokeai-tp-incompat": ("1.0", ["invokeai-core>=99"], "tp_incompat"),
    "invokeai-tp-torchy": ("1.0", ["invokeai-core>=0.1,<1", "torch==0.0.1"], "tp_torchy"),
}

HOOKS = """
from invokeai_core import hookimpl


@hookimpl
def register_invocations(register):
    from {module} import nodes

    register(nodes.Echo)
"""

NODES = '''
from invokeai_core import BaseInvocation, BaseInvocationOutput, InputField, OutputField, invocation, invocation_output


@invocation_output("{plugin}_echo_output")
class EchoOutput(BaseInvocationOutput):
    value: str = OutputField(description="The text")


@invocation("{plugin}_echo", title="Echo", category="tests", version="1.0.0")
class Echo(BaseInvocation):
    """Echoes its text."""

    text: str = InputField(default="hi", description="The text")

    def invoke(self, context) -> EchoOutput:
        return EchoOutput(value=self.text)
'''


def _write_project(folder: Path, dist: str, version: str, requires: list[str], plugin: str | None) -> None:
    module = dist.replace("-", "_")
    folder.mkdir(parents=True)
    entry = f'\n[project.entry-points."invokeai.plugins"]\n{plugin} = "{module}.hooks"\n' if plugin else ""
    deps = ", ".join(f'"{r}"' for r in requires)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "{version}"
            requires-python = ">=3.11"
            dependencies = [{deps}]
            """
        )
        + entry
        + '\n[tool.setuptools]\npackages = ["'
        + module
        + '"]\n'
    )
    package = folder / module
    package.mkdir()
    (package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    if plugin:
        (package / "hooks.py").write_text(HOOKS.format(module=module))
        (package / "nodes.py").write_text(NODES.format(plugin=plugin))


def build_wheelhouse(folder: Path) -> Path:
    """Build every wheel of `PACKS` into `folder/wheels` (two `pip wheel` runs: one run cannot hold
    two versions of tp-dep)."""
    sources = folder / "src"
    projects = []
    for key, (version, requires, plugin) in PACKS.items():
        dist = key.split("==")[0]
        project = sources / f"{dist}-{version}"
        _write_project(project, dist, version, requires, plugin)
        projects.append(str(project))
    wheels = folder / "wheels"
    for batch in (projects[:1], projects[1:]):
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        res = subprocess.run(
            [*command, "-w", str(wheels), *batch],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
    assert len(list(wheels.glob("*.whl"))) == len(PACKS), sorted(p.name for p in wheels.iterdir())
    return wheels


class Env:
    """A throwaway environment on top of the project's (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
        self.folder = folder
        self.python = folder / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.site = Path(purelib)
        project_site = sysconfig.get_paths()["purelib"]
        (self.site / "zz_invokeai_project.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
        self.invokeai = folder / "bin" / "invokeai"
        self.invokeai.write_text(
            f"#!{self.python}\nimport sys\nfrom invokeai_core.cli.main import main\nsys.exit(main())\n"
        )
        self.invokeai.chmod(0o755)

    def env(self, root: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKEAI_", "PIP_", "VIRTUAL_ENV"))}
        env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1", PATH=f"{self.folder / 'bin'}:{env.get('PATH', '')}")
        return env

    def run(self, *args: str, root: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The real `invokeai` of this environment."""
        return subprocess.run(
            [str(self.invokeai), *args], capture_output=True, text=True, env=self.env(root), timeout=timeout
        )

    def pip(self, *args: str, root: Path) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(self.python), "-m", "pip", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
            env=self.env(root),
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        return res

    def version(self, dist: str, root: Path) -> str | None:
        code = (
            "import sys\nfrom importlib import metadata\n"
            f"try:\n    print(metadata.version({dist!r}))\nexcept metadata.PackageNotFoundError:\n    print('-')\n"
        )
        out = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, env=self.env(root))
        value = out.stdout.strip()
        return None if value == "-" else value

    def installed_here(self) -> set[str]:
        """Distributions installed into the throwaway folder itself."""
        return {p.name.split("-")[0].lower() for p in self.site.glob("*.dist-info")}
