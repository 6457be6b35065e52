"""Shared helpers for the kernel's tests. The `invokeai_*` fixtures come from invokeai_core.testing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
INVOKEAI = str(VENV_BIN / "invokeai")


def run_cli(
    *args: str, root: Path, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real `invokeai` executable with an isolated root."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    full_env["INVOKEAI_ROOT"] = str(root)
    full_env["HF_HUB_OFFLINE"] = "1"
    full_env.update(env or {})
    return subprocess.run([INVOKEAI, *args], capture_output=True, text=True, env=full_env, input=input, timeout=timeout)


def write_fake_plugin(
    site: Path,
    dist: str,
    entry_name: str,
    module: str,
    source: str,
    requires: list[str] | None = None,
    version: str = "0.1.0",
) -> None:
    """Create a real installed-looking distribution (dist-info + module) in `site`."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    meta = ["Metadata-Version: 2.1", f"Name: {dist}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in (requires or [])]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    (info / "entry_points.txt").write_text(f"[invokeai.plugins]\n{entry_name} = {module}\n")
    path = site / (module.replace(".", "/") + ".py")  # a dotted module lives in packages
    for package in reversed(path.relative_to(site).parents[:-1]):
        (site / package).mkdir(exist_ok=True)
        (site / package / "__init__.py").touch()
    path.write_text(textwrap.dedent(source))


@pytest.fixture
def cli_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root
