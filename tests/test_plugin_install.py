"""`invokeai plugins install / uninstall / check` with real wheels and real pip, in a throwaway
environment per test (see tests/plugin_packs.py for why and how)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from plugin_packs import Env, build_wheelhouse


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture
def env(tmp_path: Path, wheels: Path) -> Env:
    """A fresh environment with the pack `invokeai-tp-pin` (which requires tp-dep>=2) installed."""
    e = Env(tmp_path / "venv")
    e.pip("install", "-q", "--no-index", "--find-links", str(wheels), "invokeai-tp-pin", root=tmp_path)
    assert e.version("tp-dep", tmp_path) == "2.0"
    return e


def local(wheels: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheels)]


def test_a_compatible_pack_is_installed_and_shows_its_status(env: Env, wheels: Path, tmp_path: Path) -> None:
    res = env.run("plugins", "install", "invokeai-tp-good", *local(wheels), root=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "added invokeai-tp-good 1.0" in res.stdout
    status = next(ln for ln in res.stdout.splitlines() if ln.startswith("tp_good "))
    assert "invokeai-tp-good" in status and "loaded" in status and "register_invocations" in status
    assert env.version("invokeai-tp-good", tmp_path) == "1.0" and env.version("tp-dep", tmp_path) == "2.0"
    run = env.run("run", "tp_good_echo --text hello", "--json", root=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["results"]["1"]["value"] == "hello"
    # and out again
    gone = env.run("plugins", "uninstall", "tp_good", root=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert "removed invokeai-tp-good 1.0" in gone.stdout
    assert env.version("invokeai-tp-good", tmp_path) is None
    listed = json.loads(env.run("plugins", "--json", root=tmp_path).stdout)
    assert "tp_good" not in {p["name"] for p in listed} and "tp_pin" in {p["name"] for p in listed}


def test_a_pack_that_would_downgrade_a_pinned_package_is_refused(env: Env, wheels: Path, tmp_path: Path) -> None:
    res = env.run("plugins", "install", "invokeai-tp-bad", *local(wheels), root=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "refusing to downgrade tp-dep 2.0 -> 1.0" in line
    assert "invokeai-tp-pin requires tp-dep>=2" in line and "invokeai-tp-bad 1.0 wants tp-dep<2" in line
    assert "--allow-changes" in line
    assert "would add invokeai-tp-bad 1.0" in res.stdout and "would downgrade tp-dep 2.0 -> 1.0" in res.stdout
    assert env.version("tp-dep", tmp_path) == "2.0" and env.version("invokeai-tp-bad", tmp_path) is None
    # the plan as JSON, still refused
    res = env.run("plugins", "install", "invokeai-tp-bad", "--dry-run", "--json", *local(wheels), root=tmp_path)
    assert res.returncode == 2
    data = json.loads(res.stdout)
    [refused] = data["refused"]
    assert refused["name"] == "tp-dep" and refused["kind"] == "downgrade" and refused["from_version"] == "2.0"
    assert {c["name"]: c["kind"] for c in data["changes"]} == {"invokeai-tp-bad": "add", "tp-dep": "downgrade"}
    # forced: installed, and `plugins check` then names the broken pack
    res = env.run("plugins", "install", "invokeai-tp-bad", "--allow-changes", *local(wheels), root=tmp_path)
    assert res.returncode == 0, res.stderr
    assert env.version("tp-dep", tmp_path) == "1.0"
    check = env.run("plugins", "check", root=tmp_path)
    assert check.returncode == 1, check.stdout + check.stderr
    line = next(ln for ln in check.stdout.splitlines() if ln.startswith("invokeai-tp-pin"))
    assert "tp-dep>=2" in line and "1.0" in line
    data = json.loads(env.run("plugins", "check", "--json", root=tmp_path).stdout)
    assert data["ok"] is False and [p["pack"] for p in data["problems"]] == ["invokeai-tp-pin"]


def test_a_pack_for_another_invokeai_core_is_refused_and_reported(env: Env, wheels: Path, tmp_path: Path) -> None:
    res = env.run("plugins", "install", "invokeai-tp-incompat", *local(wheels), root=tmp_path)
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert "invokeai-tp-incompat" in line and "requires invokeai-core>=99" in line and "is installed" in line
    assert env.version("invokeai-tp-incompat", tmp_path) is None
    assert env.run("plugins", "check", root=tmp_path).returncode == 0
    # installed behind invokeai's back (plain pip, no dependencies): check names the pack and the range
    env.pip("install", "-q", "--no-deps", *local(wheels), "invokeai-tp-incompat", root=tmp_path)
    check = env.run("plugins", "check", "--json", root=tmp_path)
    assert check.returncode == 1
    [problem] = json.loads(check.stdout)["problems"]
    assert (
        problem["pack"] == "invokeai-tp-incompat"
        and "requires invokeai-core>=99, but invokeai-core" in problem["problem"]
    )
    listed = json.loads(env.run("plugins", "--json", root=tmp_path).stdout)
    assert next(p for p in listed if p["name"] == "tp_incompat")["status"] == "failed"


def test_torch_is_never_changed_by_a_pack(env: Env, wheels: Path, tmp_path: Path) -> None:
    real = metadata.version("torch")  # the project's torch (2.13.0 CPU), seen by the throwaway environment
    assert env.version("torch", tmp_path) == real
    res = env.run("plugins", "install", "invokeai-tp-torchy", *local(wheels), root=tmp_path)
    assert res.returncode == 2
    assert f"refusing to downgrade torch {real} -> 0.0.1: torch is never changed by a plugin install" in res.stderr
    assert "invokeai-tp-torchy 1.0 wants torch==0.0.1" in res.stderr
    assert env.version("torch", tmp_path) == real and "torch" not in env.installed_here()


def test_uninstall_refuses_what_another_pack_requires(env: Env, tmp_path: Path) -> None:
    res = env.run("plugins", "uninstall", "tp-dep", root=tmp_path)
    assert res.returncode == 2
    assert "refusing to remove tp-dep 2.0: invokeai-tp-pin requires tp-dep>=2" in res.stderr
    assert env.version("tp-dep", tmp_path) == "2.0"
    for name, message in [
        ("no-such-pack", "no installed plugin or distribution named"),
        ("invokeai-core", "not a node pack"),
    ]:
        res = env.run("plugins", "uninstall", name, root=tmp_path)
        assert res.returncode == 2 and message in res.stderr


def test_bad_specs_are_one_line_and_exit_2(env: Env, wheels: Path, tmp_path: Path) -> None:
    res = env.run("plugins", "install", "invokeai-tp-nothing", *local(wheels), root=tmp_path)
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert "no version of invokeai-tp-nothing is available" in line
