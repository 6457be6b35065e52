"""`invokeai plugins install / uninstall / check`: change node packs without breaking the environment.

Installing a pack with plain pip can silently downgrade a library another pack pins, or swap torch
for a multi-GB build (ComfyUI #7055, Manager #2728). So `install` first asks pip itself what it would
do (`pip install --dry-run --report`, run as `sys.executable -m pip`, the environment invokeai runs
in), shows what would be added, upgraded or downgraded, and refuses (exit 2, naming the package, the
installed pack that requires it and the new pack that wants it) any change to a package that an
installed pack (or invokeai-core itself) requires, or to torch, unless `--allow-changes`. Then it
installs exactly what was resolved (the resolution as constraints) and shows the new plugin's status
as `invokeai plugins` does, from a fresh process (the one running cannot re-import upgraded code).

`check` reports installed packs whose requirements conflict: `pip check`, and the `invokeai-core`
range each pack declares. pip internals are never imported: pip runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from invokeai_core.cli.output import table
from invokeai_core.cli.state import CliError, CliState, pass_state

if TYPE_CHECKING:
    from importlib.metadata import Distribution

#: Packages no pack may change behind the user's back, whoever requires them.
ALWAYS_PROTECTED = ("torch",)
KERNEL_DIST = "invokeai-core"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Change:
    """One package pip would add, upgrade, downgrade or reinstall."""

    name: str
    kind: str  # add, upgrade, downgrade, reinstall
    to_version: str
    from_version: str | None = None
    required_by: list[str] = field(default_factory=list)  # "invokeai-tp-pin requires tp-dep>=2"
    wanted_by: list[str] = field(default_factory=list)  # "invokeai-tp-bad 1.0 wants tp-dep<2"

    def describe(self) -> str:
        if self.from_version is None:
            return f"{self.kind} {self.name} {self.to_version}"
        return f"{self.kind} {self.name} {self.from_version} -> {self.to_version}"

    def refusal(self) -> str:
        text = f"refusing to {self.describe()}: " + ", ".join(self.required_by)
        if self.wanted_by:
            text += " (wanted by " + ", ".join(self.wanted_by) + ")"
        return text


# -- the environment ---------------------------------------------------------------------------------
def _applies(req: Any) -> bool:
    return req.marker is None or bool(req.marker.evaluate({"extra": ""}))


def _requirements(dist: Distribution) -> list[Any]:
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if _applies(req):
            out.append(req)
    return out


def pack_distributions() -> dict[str, Distribution]:
    """Installed distributions that provide an `invokeai.plugins` entry point, by canonical name."""
    from importlib import metadata

    from invokeai_core.hookspecs import ENTRY_POINT_GROUP

    packs: dict[str, Distribution] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:
            packs.setdefault(canonical(ep.dist.name), ep.dist)
    return packs


def protected_packages(exclude: set[str]) -> dict[str, list[str]]:
    """Package -> who requires it ("invokeai-tp-pin requires tp-dep>=2"): the requirements of every
    installed pack and of invokeai-core, and torch. Packs in `exclude` (being replaced) do not count."""
    from importlib import metadata

    owners: dict[str, Distribution] = {k: v for k, v in pack_distributions().items() if k not in exclude}
    try:
        owners.setdefault(KERNEL_DIST, metadata.distribution(KERNEL_DIST))
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree run without installing
        pass
    protected: dict[str, list[str]] = {
        name: ["torch is never changed by a plugin install"] for name in ALWAYS_PROTECTED
    }
    for dist in (owners[k] for k in sorted(owners)):
        for req in _requirements(dist):
            protected.setdefault(canonical(req.name), []).append(f"{dist.metadata['Name']} requires {req}")
    return protected


def installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- pip ---------------------------------------------------------------------------------------------
def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pip ARGS` in the environment invokeai runs in."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env)


def pip_failure(res: subprocess.CompletedProcess[str], what: str) -> str:
    """One line from pip's error output: the requirement nobody could satisfy, and who asked."""
    text = (res.stderr or "") + (res.stdout or "")
    found = re.search(r"satisfies the requirement (\S+)(?: \(from ([^)]+)\))?", text)
    if found:
        req, source = found.group(1), found.group(2)
        if canonical(re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0]) == KERNEL_DIST:
            from invokeai_core.version import __version__

            return (
                f"{source or 'a requested package'} requires {req}, but invokeai-core {__version__} is installed "
                "(the pack does not support this invokeai-core: install a version of it that does)"
            )
        return f"{what}: no version of {req} is available" + (f" (required by {source})" if source else "")
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ERROR:")]
    last = errors[-1] if errors else (text.strip().splitlines() or ["pip failed"])[-1]
    return f"{what}: {last.removeprefix('ERROR:').strip()}"


def resolve(specs: list[str], pip_args: list[str]) -> list[dict[str, Any]]:
    """What `pip install SPECS` would install here, from pip's own resolver (`--dry-run --report`)."""
    with tempfile.TemporaryDirectory(prefix="invokeai-pip-") as tmp:
        report = Path(tmp) / "report.json"
        res = pip("install", "--dry-run", "--quiet", "--report", str(report), *pip_args, *specs)
        if res.returncode != 0 or not report.is_file():
            raise CliError(pip_failure(res, "cannot resolve " + " ".join(specs)))
        data = json.loads(report.read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = data.get("install", [])
    return items


def plan(items: list[dict[str, Any]]) -> list[Change]:
    """The changes pip's report means here, and which of them touch protected packages."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    incoming = {canonical(i["metadata"]["name"]) for i in items}
    protected = protected_packages(exclude=incoming)
    changes: list[Change] = []
    for item in items:
        meta = item["metadata"]
        name, version = canonical(meta["name"]), meta["version"]
        current = installed_version(name)
        if current is None:
            kind = "add"
        elif Version(version) > Version(current):
            kind = "upgrade"
        elif Version(version) < Version(current):
            kind = "downgrade"
        else:
            kind = "reinstall"
        change = Change(name, kind, version, current)
        if current is not None and name in protected:
            change.required_by = protected[name]
            for other in items:
                for raw in other["metadata"].get("requires_dist", []) or []:
                    try:
                        req = Requirement(raw)
                    except InvalidRequirement:
                        continue
                    if canonical(req.name) == name and _applies(req):
                        who = f"{other['metadata']['name']} {other['metadata']['version']}"
                        change.wanted_by.append(f"{who} wants {req}")
        changes.append(change)
    return changes


def plugin_status(state: CliState, dists: set[str]) -> list[dict[str, Any]]:
    """The plugins of `dists` as `invokeai plugins --json` shows them, from a fresh process."""
    args = [sys.executable, "-m", "invokeai_core.cli.main"]
    if state.options.root:
        args += ["--root", state.options.root]
    if state.options.config_file:
        args += ["--config", state.options.config_file]
    for key, value in state.options.overrides.items():
        args += ["-o", f"{key}={json.dumps(value)}"]
    res = subprocess.run([*args, "plugins", "--json"], capture_output=True, text=True)
    if res.returncode != 0:
        raise CliError(f"installed, but `invokeai plugins` failed: {res.stderr.strip().splitlines()[-1:]}")
    infos: list[dict[str, Any]] = json.loads(res.stdout)
    return [i for i in infos if i.get("dist") and canonical(i["dist"]) in dists]


def status_table(infos: list[dict[str, Any]]) -> str:
    rows = [
        [
            i["name"],
            i["dist"] or "-",
            i["version"] or "-",
            i["status"],
            ", ".join(i["hooks"]) or "-",
            str(len(i["nodes"])),
        ]
        for i in infos
    ]
    text = table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "NODES"])
    for i in infos:
        if i["status"] != "loaded" and (i.get("error") or i.get("hint")):
            text += f"\n{i['name']}: {i['status']}" + (f": {i['error']}" if i.get("error") else "")
    return text


def _emit(as_json: bool, data: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            click.echo(line)


def _pip_args(find_links: tuple[str, ...], no_index: bool, index_url: str | None, extra: tuple[str, ...]) -> list[str]:
    args = [a for link in find_links for a in ("--find-links", link)]
    if no_index:
        args.append("--no-index")
    if index_url:
        args += ["--index-url", index_url]
    return [*args, *extra]


def _check_specs(specs: tuple[str, ...]) -> list[str]:
    for spec in specs:
        if spec.startswith("-"):
            raise CliError(f"'{spec}' is not a requirement (pip options go in --pip-arg)")
    return list(specs)


_PIP_OPTIONS = [
    click.option("--find-links", multiple=True, metavar="DIR|URL", help="Also look for packages here (pip's)."),
    click.option("--no-index", is_flag=True, help="Do not use the package index (pip's)."),
    click.option("--index-url", default=None, metavar="URL", help="The package index (pip's)."),
    click.option("--pip-arg", "pip_extra", multiple=True, metavar="ARG", help="Another pip option (repeatable)."),
]


def pip_options(fn: Any) -> Any:
    for option in reversed(_PIP_OPTIONS):
        fn = option(fn)
    return fn


# -- commands ----------------------------------------------------------------------------------------
@click.command("install")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--allow-changes", is_flag=True, help="Allow changes to packages installed packs require, and torch.")
@click.option("--dry-run", is_flag=True, help="Show what would change; install nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and the outcome as JSON.")
@pip_options
@pass_state
def install_command(
    state: CliState,
    specs: tuple[str, ...],
    allow_changes: bool,
    dry_run: bool,
    as_json: bool,
    find_links: tuple[str, ...],
    no_index: bool,
    index_url: str | None,
    pip_extra: tuple[str, ...],
) -> None:
    """Install node packs (pip requirement specs), refusing to change what installed packs need.

    \b
      invokeai plugins install invokeai-sunset
      invokeai plugins install 'invokeai-sunset>=1.2' --dry-run
      invokeai plugins install ./invokeai_sunset-1.2.0-py3-none-any.whl

    Exit status: 0 installed (or planned, with --dry-run), 1 pip failed while installing, 2 refused
    or bad input (nothing changed)."""
    args = _pip_args(find_links, no_index, index_url, pip_extra)
    wanted = _check_specs(specs)
    items = resolve(wanted, args)
    changes = plan(items)
    refused = [c for c in changes if c.required_by]
    data: dict[str, Any] = {
        "action": "install",
        "specs": wanted,
        "changes": [asdict(c) for c in changes],
        "refused": [asdict(c) for c in refused] if not allow_changes else [],
        "installed": False,
        "plugins": [],
    }
    lines = [f"would {c.describe()}" + (" (changes a protected package)" if c.required_by else "") for c in changes]
    if not changes:
        lines = ["nothing to install: every requirement is already satisfied"]
    if refused and not allow_changes:
        _emit(as_json, data, [] if as_json else lines)
        raise CliError("; ".join(c.refusal() for c in refused) + "; pass --allow-changes to do it anyway")
    if dry_run or not changes:
        _emit(as_json, data, lines)
        return
    with tempfile.TemporaryDirectory(prefix="invokeai-pip-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items if not i.get("is_direct")]
        constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
        res = pip("install", "--quiet", "-c", str(constraints), *args, *wanted)
    if res.returncode != 0:
        _emit(as_json, data, lines)
        click.echo(f"invokeai: error: {pip_failure(res, 'pip install failed')}", err=True)
        sys.exit(1)
    data["installed"] = True
    data["plugins"] = plugin_status(state, {c.name for c in changes})
    lines = [c.describe().replace("add ", "added ", 1) if c.kind == "add" else c.describe() for c in changes]
    if data["plugins"]:
        lines += ["", status_table(data["plugins"])]
    _emit(as_json, data, lines)


@click.command("uninstall")
@click.argument("name")
@click.option("--allow-changes", is_flag=True, help="Remove it even if installed packs require it.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_state
def uninstall_command(state: CliState, name: str, allow_changes: bool, dry_run: bool, as_json: bool) -> None:
    """Uninstall a node pack, by plugin name (as `invokeai plugins` shows it) or distribution name."""
    from importlib import metadata

    from invokeai_core.hookspecs import ENTRY_POINT_GROUP

    dist_name: str | None = None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name and ep.dist is not None:
            dist_name = canonical(ep.dist.name)
    if dist_name is None:
        if installed_version(name) is None:
            raise CliError(f"no installed plugin or distribution named '{name}' (see `invokeai plugins`)")
        dist_name = canonical(name)
    version = installed_version(dist_name)
    if dist_name == KERNEL_DIST or dist_name in ALWAYS_PROTECTED:
        raise CliError(f"refusing to uninstall {dist_name}: it is not a node pack")
    required_by = [w for w in protected_packages(exclude={dist_name}).get(dist_name, [])]
    data: dict[str, Any] = {
        "action": "uninstall",
        "distribution": dist_name,
        "version": version,
        "required_by": required_by,
        "removed": False,
    }
    if required_by and not allow_changes:
        _emit(as_json, data, [])
        raise CliError(
            f"refusing to remove {dist_name} {version}: " + ", ".join(required_by) + "; pass --allow-changes to do it"
        )
    if dry_run:
        _emit(as_json, data, [f"would remove {dist_name} {version}"])
        return
    res = pip("uninstall", "--yes", "--quiet", dist_name)
    if res.returncode != 0:
        click.echo(f"invokeai: error: {pip_failure(res, 'pip uninstall failed')}", err=True)
        sys.exit(1)
    data["removed"] = True
    _emit(as_json, data, [f"removed {dist_name} {version}"])


_HAS_REQ = re.compile(r"^(?P<dist>\S+) (?P<ver>\S+) has requirement (?P<req>.+), but you have (?P<got>.+)\.$")
_REQUIRES = re.compile(r"^(?P<dist>\S+) (?P<ver>\S+) requires (?P<req>.+), which is not installed\.$")


def check_problems() -> tuple[list[dict[str, str]], list[str]]:
    """Problems of installed packs (`pack`, `problem`), and pip's other complaints about the environment."""
    from packaging.version import Version

    from invokeai_core.version import __version__

    packs = pack_distributions()
    problems: list[dict[str, str]] = []
    for dist in (packs[k] for k in sorted(packs)):
        for req in _requirements(dist):
            if canonical(req.name) == KERNEL_DIST and not req.specifier.contains(
                Version(__version__), prereleases=True
            ):
                problems.append(
                    {
                        "pack": dist.metadata["Name"],
                        "version": dist.version,
                        "problem": f"requires invokeai-core{req.specifier}, "
                        f"but invokeai-core {__version__} is installed",
                    }
                )
    res = pip("check")
    others: list[str] = []
    for line in res.stdout.splitlines():
        line = line.strip()
        match = _HAS_REQ.match(line) or _REQUIRES.match(line)
        if not line or line.startswith("No broken requirements"):
            continue
        if match is None:
            others.append(line)
            continue
        subject = canonical(match["dist"])
        req_name = canonical(re.split(r"[<>=!~ ;\[(]", match["req"], maxsplit=1)[0])
        if subject in packs:
            if req_name == KERNEL_DIST:
                continue  # reported above, with the running version
            problems.append({"pack": match["dist"], "version": match["ver"], "problem": line})
        else:
            others.append(line)
    return problems, others


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_command(as_json: bool) -> None:
    """Report installed packs whose requirements conflict (exit status 1 when one does): what `pip
    check` finds about them, and each pack's `invokeai-core` range against the installed version."""
    problems, others = check_problems()
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems, "environment": others}, indent=2))
    else:
        if problems:
            rows = [[p["pack"], p["version"], p["problem"]] for p in problems]
            click.echo(table(rows, ["PACK", "VERSION", "PROBLEM"]))
        else:
            click.echo("no conflicts: every installed pack's requirements are satisfied")
        if others:
            click.echo("\nother problems pip check found in this environment:")
            for line in others:
                click.echo(f"  {line}")
    if problems:
        sys.exit(1)


COMMANDS = [install_command, uninstall_command, check_command]
