"""`invokeai plugins new NAME`: render the plugin template into a new, installable plugin project.

The template (`invokeai_plugin_template/` of the invokeai-core source tree, shipped inside the package
as `invokeai_core/plugin_template`, a link to it in the source tree) is a copier template;
copier is needed only by this command and is imported when it runs, so a missing copier costs the
rest of the CLI nothing and gets one clear line here. Rendering is offline: the template is a local
folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import click

from invokeai_core.cli.state import CliError

#: Environment variable naming a template folder to use instead of the one shipped with the source.
TEMPLATE_ENV = "INVOKEAI_PLUGIN_TEMPLATE"
TEMPLATE_DIR_NAME = "invokeai_plugin_template"
#: Where the template is inside the installed package.
SHIPPED_TEMPLATE = "plugin_template"
COPIER_HINT = 'pip install "copier>=9,<10"'

_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
#: Plugin names that cannot be used: the kernel's built-in plugin.
_RESERVED = frozenset({"core"})


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the plugin name given on the command line."""

    slug: str

    @property
    def dist(self) -> str:
        return "invokeai-" + self.slug.replace("_", "-")

    @property
    def module(self) -> str:
        return f"invokeai_{self.slug}"

    @property
    def node(self) -> str:
        return f"{self.slug}_gradient"


def plugin_names(name: str) -> PluginNames:
    """`"sunset"`, `"invokeai-sunset"` and `"Sunset"` all name the plugin `sunset`; `"My Nodes"` and
    `"my-nodes"` name `my_nodes` (distribution `invokeai-my-nodes`, module `invokeai_my_nodes`)."""
    text = name.strip().lower()
    for prefix in ("invokeai-", "invokeai_"):
        if text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix) :]
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if not _SLUG.match(slug):
        raise CliError(
            f"cannot make a plugin name from {name!r}: use letters, digits, '-' or '_', starting with a letter "
            "(e.g. 'sunset' or 'my-nodes')"
        )
    if slug in _RESERVED:
        raise CliError(f"'{slug}' is the name of invokeai-core's built-in plugin; choose another name")
    return PluginNames(slug)


def core_requirement_bounds(version: str) -> tuple[str, str]:
    """`("0.1", "1")` for invokeai-core 0.1.0: plugins require `invokeai-core>=0.1,<1`."""
    from packaging.version import Version

    v = Version(version)
    return f"{v.major}.{v.minor}", str(v.major + 1)


def find_template(explicit: str | None = None) -> Path:
    """The template folder: `--template`, else `$INVOKEAI_PLUGIN_TEMPLATE`, else the one shipped inside
    the invokeai_core package (from a wheel as from a source checkout)."""
    import invokeai_core

    if explicit:
        candidates = [(Path(explicit).expanduser(), "--template")]
    elif os.environ.get(TEMPLATE_ENV):
        candidates = [(Path(os.environ[TEMPLATE_ENV]).expanduser(), TEMPLATE_ENV)]
    else:
        shipped = Path(invokeai_core.__file__).resolve().parent / SHIPPED_TEMPLATE
        candidates = [(shipped, "the invokeai-core package")]
    for path, _origin in candidates:
        if (path / "copier.yml").is_file():
            return path.resolve()
    path, origin = candidates[0]
    raise CliError(
        f"no plugin template at {path} (from {origin}): pass --template DIR or set {TEMPLATE_ENV} to a copy of "
        f"invokeai-core's {TEMPLATE_DIR_NAME}/ folder"
    )


@dataclass(frozen=True)
class RenderedPlugin:
    names: PluginNames
    path: Path


def render_plugin(
    name: str,
    output: Path,
    *,
    author: str | None = None,
    email: str | None = None,
    description: str | None = None,
    title: str | None = None,
    template: str | None = None,
) -> RenderedPlugin:
    """Render the template into `output/invokeai-<name>`; refuses a folder that exists and is not empty."""
    names = plugin_names(name)
    template_dir = find_template(template)
    try:
        import copier
    except ImportError:
        raise CliError(
            f"`invokeai plugins new` renders the plugin template with copier, which is not installed: {COPIER_HINT}"
        ) from None
    from copier.errors import CopierError

    from invokeai_core.version import __version__

    dest = Path(output).expanduser() / names.dist
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CliError(f"{dest} already exists and is not empty: choose another --output or remove it")
    core_min, core_next_major = core_requirement_bounds(__version__)
    data: dict[str, str] = {"plugin_name": names.slug, "core_min": core_min, "core_next_major": core_next_major}
    for key, value in (("author_name", author), ("author_email", email), ("description", description)):
        if value:
            data[key] = value
    if title:
        data["project_title"] = title
    try:
        copier.run_copy(str(template_dir), str(dest), data=data, defaults=True, quiet=True, unsafe=False)
    except (CopierError, ValueError) as e:
        raise CliError(f"rendering the plugin template failed: {e}") from None
    return RenderedPlugin(names, dest)


def _installed_plugin_names() -> dict[str, str]:
    from importlib import metadata

    from invokeai_core.hookspecs import ENTRY_POINT_GROUP

    return {
        ep.name: (ep.dist.name if ep.dist is not None else ep.value)
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
    }


@click.command("new")
@click.argument("name")
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="The folder to create the project in (the project is its subfolder invokeai-NAME).",
)
@click.option("--author", help="Your name, for the package metadata.")
@click.option("--email", help="Your e-mail address, for the package metadata.")
@click.option("--description", help="One line describing the plugin, for the package index.")
@click.option("--title", help="A human title for the node pack (default: from NAME).")
@click.option(
    "--template",
    metavar="DIR",
    help=f"The template folder (default: ${TEMPLATE_ENV}, else invokeai-core's {TEMPLATE_DIR_NAME}/).",
)
def new_command(
    name: str,
    output: str,
    author: str | None,
    email: str | None,
    description: str | None,
    title: str | None,
    template: str | None,
) -> None:
    """Create a new plugin project: a node pack with one example node, tests and CI.

    \b
      invokeai plugins new sunset      ->  ./invokeai-sunset: distribution invokeai-sunset,
                                           module invokeai_sunset, node sunset_gradient

    NAME becomes the plugin's entry-point name (lower case, '-' becomes '_'). Needs copier
    (pip install copier). Works offline.
    """
    rendered = render_plugin(
        name, Path(output), author=author, email=email, description=description, title=title, template=template
    )
    names = rendered.names
    taken = _installed_plugin_names().get(names.slug)
    if taken is not None:
        click.echo(
            f"note: a plugin named '{names.slug}' is already installed ({taken}); two plugins of one name "
            "cannot load together",
            err=True,
        )
    try:
        shown = rendered.path.relative_to(Path.cwd())
    except ValueError:
        shown = rendered.path
    click.echo(f"created {shown}{os.sep}")
    click.echo(f"  distribution {names.dist}, plugin {names.slug}, module {names.module}, example node {names.node}")
    click.echo("next:")
    click.echo(f"  cd {shown}")
    click.echo('  pip install -e ".[test]"')
    click.echo("  pytest")
    click.echo(f"  invokeai nodes {names.node}")
