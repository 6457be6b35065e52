"""The plugin host: discovers entry points, registers them with pluggy, and runs their hooks one
plugin at a time so that a failure is contained, reported and rolled back.

Loading is lazy and idempotent: entry points are read (cheap metadata) and plugin objects imported
on first use; `register_invocations` runs only when the node registry is first needed and
`register_services` only when services are built. `invokeai --help` therefore imports plugin hook
modules but no node modules and no heavy libraries.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from invokeai_core import hookspecs
from invokeai_core.errors import PluginError
from invokeai_core.version import __version__

if TYPE_CHECKING:
    import click

    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invoker import Invoker
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.services.registry import ServiceImpl, ServiceRegistry

logger = logging.getLogger("invokeai.plugins")

PluginStatus = Literal["loaded", "failed", "blocked", "disabled"]

#: The kernel's own defaults, registered through the same hooks as any plugin. Cannot be blocked.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (("core", "invokeai_core.builtin.core"),)


@dataclass
class PluginInfo:
    """What `invokeai plugins` shows for one plugin."""

    name: str
    module: str
    dist: str | None = None
    version: str | None = None
    status: PluginStatus = "loaded"
    error: str | None = None
    hint: str | None = None
    hooks: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env_allowlist(environ: dict[str, str] | os._Environ[str]) -> set[str] | None:
    raw = environ.get("INVOKEAI_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


#: The distributions of this repository: loaded before any other plugin, so a newly installed pack
#: whose names clash with theirs is the one that fails (they keep working).
BUNDLED_DISTRIBUTIONS = frozenset(
    {"invokeai-nodes", "invokeai-diffusers", "invokeai-web", "invokeai-s3", "invokeai-redis"}
)


def installed_at(dist: metadata.Distribution | None) -> float:
    """When a distribution was installed (its metadata folder's time; 0 when unknown)."""
    path = getattr(dist, "_path", None)  # PathDistribution, what pip, uv and editable installs make
    try:
        return os.stat(path).st_mtime if path is not None else 0.0
    except OSError:
        return 0.0


def load_order(ep: metadata.EntryPoint) -> tuple[int, float, str]:
    """The order plugins load in, which decides clashes (the plugin loaded first keeps a node type,
    service or command name): the bundled distributions first, then the others in the order they
    were installed, then by entry-point name. So installing a new pack never knocks out a set of
    nodes that was already working: the newcomer is the one marked failed, with both names."""
    dist = ep.dist
    name = (dist.name if dist is not None else "").lower().replace("_", "-")
    return (0 if name in BUNDLED_DISTRIBUTIONS else 1, installed_at(dist), ep.name)


#: What to do about two plugins that register the same name.
CLASH_HINT = (
    "the plugin loaded first keeps the name (the bundled plugins, then the others in the order they were "
    "installed): rename it in the newer plugin, uninstall one, or block one in plugins.block"
)


def _check_node(registry: NodeRegistry, plugin: str, cls: type) -> None:
    registry.check(cls, plugin)


class PluginHost:
    """Owns the pluggy manager, the plugin statuses, and the registries the hooks fill."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        discover: bool = True,
        strict: bool | None = None,
        allowlist: set[str] | Literal["env"] | None = "env",
        blocklist: Iterable[str] | None = None,
    ) -> None:
        self._config = config
        self.discover = discover
        self.strict = _truthy(os.environ.get("INVOKEAI_STRICT_PLUGINS")) if strict is None else strict
        self.allowlist = _env_allowlist(os.environ) if allowlist == "env" else allowlist
        self._blocklist = set(blocklist) if blocklist is not None else None
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._loaded = False
        self._registry: NodeRegistry | None = None
        self._services: ServiceRegistry | None = None
        self._lock = threading.RLock()
        self._added_specs: set[int] = set()

    # -- configuration ------------------------------------------------------------------------
    @property
    def config(self) -> InvokeAIConfig:
        if self._config is None:
            from invokeai_core.config import load_config

            self._config = load_config()
        return self._config

    @property
    def blocklist(self) -> set[str]:
        if self._blocklist is None:
            self._blocklist = set(self.config.plugins.block)
        return self._blocklist

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> PluginHost:
        """Register the built-in plugins and every allowed entry point (idempotent)."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            import importlib

            for name, module_name in BUILTIN_PLUGINS:
                module = importlib.import_module(module_name)
                info = PluginInfo(
                    name=name, module=module_name, dist="invokeai-core", version=__version__, builtin=True
                )
                self.plugins[name] = info
                self.pm.register(module, name=name)
            if self.discover:
                for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=load_order):
                    self._load_entry_point(ep)
            self._finish_registration()
            return self

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        info = PluginInfo(name=ep.name, module=ep.value, dist=dist, version=version)
        if ep.name in self.plugins:
            other = self.plugins[ep.name]
            info.status = "failed"
            info.error = f"the plugin name '{ep.name}' is already used by {other.dist or other.module}"
            self.plugins[f"{ep.name}@{dist}"] = info
            self._fail_strict(info)
            return
        self.plugins[ep.name] = info
        if self.allowlist is not None and ep.name not in self.allowlist:
            info.status = "disabled"
            info.hint = "not in INVOKEAI_LOAD_PLUGINS"
            return
        if ep.name in self.blocklist:
            info.status = "blocked"
            info.hint = "listed in plugins.block in the configuration"
            return
        problem = self._compatibility_problem(ep)
        if problem:
            self._mark_failed(info, problem, f"install a version of {dist} that supports invokeai-core {__version__}")
            return
        try:
            obj = ep.load()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            hint = None
            if isinstance(e, ImportError) and getattr(e, "name", None):
                hint = (
                    f"the plugin needs the module '{e.name}': install it, or reinstall the plugin "
                    f"with `pip install --force-reinstall {dist or ep.name}`"
                )
            self._mark_failed(info, f"{type(e).__name__}: {e}", hint)
            return
        try:
            self.pm.register(obj, name=ep.name)
        except Exception as e:
            self._mark_failed(info, f"{type(e).__name__}: {e}", None)

    def _compatibility_problem(self, ep: metadata.EntryPoint) -> str | None:
        if ep.dist is None:
            return None
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.version import Version

        for raw in ep.dist.requires or []:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if req.name.lower().replace("_", "-") != "invokeai-core" or req.marker is not None:
                continue
            if req.specifier and not req.specifier.contains(Version(__version__), prereleases=True):
                return f"requires invokeai-core{req.specifier}, but invokeai-core {__version__} is installed"
        return None

    def _finish_registration(self) -> None:
        # Plugins may add hookspecs of their own before unknown hook names are checked. A plugin's
        # specs are added only once its hook returned: one that raises leaves none behind.
        pending: dict[str, list[Any]] = {}

        def prepare(name: str) -> dict[str, Any]:
            pending[name] = []
            return {"add": pending[name].append}

        def commit(name: str) -> None:
            for specs in pending.pop(name, []):
                if id(specs) not in self._added_specs:
                    self._added_specs.add(id(specs))
                    self.pm.add_hookspecs(specs)

        self.call_each("register_hookspecs", prepare=prepare, on_success=commit)
        for name, info in list(self.plugins.items()):
            plugin = self.pm.get_plugin(name)
            if plugin is None or info.status != "loaded":
                continue
            problem = self._hookimpl_problem(plugin)
            if problem is not None:
                self._mark_failed(info, *problem)
                continue
            info.hooks = sorted(c.name for c in (self.pm.get_hookcallers(plugin) or []) if c.spec is not None)
        self.pm.check_pending()

    def _hookimpl_problem(self, plugin: Any) -> tuple[str, str] | None:
        """Why the host cannot call this plugin's hook implementations, if it cannot: a hook nobody
        specified, or an option (`wrapper=True`, `hookwrapper=True`) that needs pluggy's own call
        loop, since every hook here is called plugin by plugin."""
        unknown: list[str] = []
        wrappers: list[str] = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if caller.spec is None and not impl.optionalhook:
                    unknown.append(caller.name)
                if impl.wrapper or impl.hookwrapper:
                    wrappers.append(caller.name)
        if unknown:
            return (
                f"implements unknown hook(s) {', '.join(sorted(unknown))}",
                "check the hook names against invokeai_core.hookspecs (a typo?)",
            )
        if wrappers:
            return (
                f"marks {', '.join(sorted(wrappers))} with wrapper=True or hookwrapper=True, which invokeai "
                "hooks do not support: each plugin's implementation is called on its own",
                "drop the wrapper option (tryfirst=True / trylast=True order implementations)",
            )
        return None

    def _mark_failed(self, info: PluginInfo, error: str, hint: str | None) -> None:
        info.status = "failed"
        info.error = error
        info.hint = hint
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)
        if self._registry is not None:
            self._registry.remove_plugin(info.name)
        if self._services is not None:
            self._services.remove_plugin(info.name)
        info.nodes = []
        info.services = []
        self._fail_strict(info)
        logger.warning("plugin '%s' failed and was skipped: %s", info.name, error)

    def _fail_strict(self, info: PluginInfo, error: str | None = None) -> None:
        if self.strict:
            raise PluginError(
                f"plugin '{info.name}' failed: {error or info.error}"
                + (f" ({info.hint})" if info.hint and error is None else "")
                + " [INVOKEAI_STRICT_PLUGINS=1]"
            )

    def call_each(
        self,
        hook_name: str,
        kwargs: Mapping[str, Any] | None = None,
        *,
        only: str | None = None,
        prepare: Callable[[str], Mapping[str, Any]] | None = None,
        on_success: Callable[[str], None] | None = None,
        on_error: Callable[[str, BaseException], None] | None = None,
        mark_failed: bool = True,
    ) -> dict[str, BaseException]:
        """Call a hook plugin by plugin, each implementation on its own, in pluggy's order
        (`tryfirst` first, then the most recently registered first, `trylast` last).

        `kwargs` are the hook's arguments; `prepare(plugin)` may add per-plugin ones (a `register`
        callable that records what this plugin registers). After an implementation returns,
        `on_success(plugin)` runs; if it raises, `on_error(plugin, exc)` runs (undo what it did) and the
        plugin is marked failed and rolled back (unless `mark_failed=False`: the web plugin keeps a
        plugin whose routes failed, without them). In strict mode a failure raises `PluginError`.
        Only loaded plugins are called (only `only`, when given). Returns `{plugin: exception}` for
        the implementations that raised. A hook no plugin specified calls nothing.
        """
        caller = getattr(self.pm.hook, hook_name, None)
        errors: dict[str, BaseException] = {}
        if caller is None:
            return errors
        for impl in reversed(caller.get_hookimpls()):  # pluggy calls them in this order
            name = impl.plugin_name
            if (only is not None and name != only) or impl.wrapper or impl.hookwrapper:
                continue
            info = self.plugins.get(name)
            if info is None or info.status != "loaded":
                continue
            call_kwargs = dict(kwargs or {})
            if prepare is not None:
                call_kwargs.update(prepare(name))
            try:
                impl.function(*[call_kwargs[a] for a in impl.argnames])
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt | PluginError):
                    raise
                error = f"{hook_name} raised {type(e).__name__}: {e}"
                errors[name] = e
                if on_error is not None:
                    on_error(name, e)
                if mark_failed:
                    self._mark_failed(info, error, None)
                else:
                    logger.warning("plugin '%s': %s", name, error, exc_info=e)
                    self._fail_strict(info, error)
                continue
            if on_success is not None:
                on_success(name)
        return errors

    def _collect(self, hook_name: str, make: Callable[..., Any], only: str | None = None) -> dict[str, list[Any]]:
        """Call a `register(...)`-style hook plugin by plugin; `make(plugin, *args, **kwargs)` turns
        each registration into an item (a bad call raises inside the plugin's hook). Returns what each
        plugin registered in load order, so the plugin loaded first wins a clash whatever order the
        hooks ran in. What a plugin registered before it raised is dropped with it."""
        pending: dict[str, list[Any]] = {}

        def prepare(name: str) -> dict[str, Any]:
            items = pending[name] = []

            def register(*args: Any, **kwargs: Any) -> None:
                items.append(make(name, *args, **kwargs))

            return {"register": register}

        def drop(name: str, _: BaseException) -> None:
            pending.pop(name, None)

        self.call_each(hook_name, prepare=prepare, on_error=drop, only=only)
        return {name: pending[name] for name in self.plugins if name in pending}

    def _checked(self, name: str, items: list[Any], check: Callable[[Any], None]) -> bool:
        """Check one plugin's registrations against what is registered; a clash fails the plugin."""
        try:
            for item in items:
                check(item)
        except Exception as e:
            self._mark_failed(self.plugins[name], str(e), CLASH_HINT)
            return False
        return True

    # -- registries ---------------------------------------------------------------------------
    @property
    def registry(self) -> NodeRegistry:
        """The node registry, filled by `register_invocations` on first access."""
        if self._registry is not None:
            return self._registry
        with self._lock:
            if self._registry is None:
                from invokeai_core.registry import NodeRegistry

                self.load()
                registry = NodeRegistry(validation_context={"config": self.config})
                self._registry = registry
                self._run_register_invocations(registry)
            return self._registry

    def _run_register_invocations(self, registry: NodeRegistry, only: str | None = None) -> None:
        collected = self._collect("register_invocations", lambda _plugin, cls: cls, only=only)
        for name, classes in collected.items():
            if not self._checked(name, classes, functools.partial(_check_node, registry, name)):
                continue
            info = self.plugins[name]
            for cls in classes:
                registry.add(cls, name, info.version or "0", info.dist)
            info.nodes = registry.by_plugin(name)
        self._run_register_node_migrations(registry, only=only)

    def _run_register_node_migrations(self, registry: NodeRegistry, only: str | None = None) -> None:
        from invokeai_core.graph_file import make_migration

        collected = self._collect("register_node_migrations", make_migration, only=only)
        for name, steps in collected.items():
            seen: set[tuple[str, Any]] = set()

            def check(step: Any, seen: set[tuple[str, Any]] = seen, name: str = name) -> None:
                registry.migrations.check(step)
                if (step.node_type, step.key) in seen:
                    raise PluginError(
                        f"plugin '{name}' registers the migration of '{step.node_type}' to {step.to_version} twice"
                    )
                seen.add((step.node_type, step.key))

            if self.plugins[name].status != "loaded" or not self._checked(name, steps, check):
                continue
            for step in steps:
                registry.migrations.add(step)

    @property
    def service_registry(self) -> ServiceRegistry:
        """Service implementations, filled by `register_services` on first access."""
        if self._services is not None:
            return self._services
        with self._lock:
            if self._services is None:
                from invokeai_core.services.registry import ServiceRegistry

                self.load()
                services = ServiceRegistry()
                self._services = services
                self._run_register_services(services)
            return self._services

    def _run_register_services(self, services: ServiceRegistry, only: str | None = None) -> None:
        from invokeai_core.services.registry import ServiceImpl

        def make(
            plugin: str,
            kind: str,
            impl_name: str,
            path: str,
            *,
            description: str = "",
            install_hint: str | None = None,
            default: bool = False,
        ) -> ServiceImpl:
            return ServiceImpl(kind, impl_name, path, plugin, description, install_hint, default)

        for name, impls in self._collect("register_services", make, only=only).items():
            if not self._checked(name, impls, services.check):
                continue
            for impl in impls:
                services.add(impl)
            self.plugins[name].services = [f"{i.kind}:{i.name}" for i in impls]

    # -- plugins added at run time (tests, notebooks) ------------------------------------------
    def register_plugin(self, plugin: Any, name: str | None = None, version: str = "0") -> PluginInfo:
        """Register a plugin object directly (no entry point), running the hooks already run."""
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self.plugins and self.plugins[name].status == "loaded":
                raise PluginError(f"a plugin named '{name}' is already registered")
            info = PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)), version=version)
            self.plugins[name] = info
            self.pm.register(plugin, name=name)
            self._finish_registration()
            if info.status == "loaded":
                if self._registry is not None:
                    self._run_register_invocations(self._registry, only=name)
                if self._services is not None and info.status == "loaded":
                    self._run_register_services(self._services, only=name)
            return info

    def unregister_plugin(self, name: str) -> None:
        with self._lock:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            if self._registry is not None:
                self._registry.remove_plugin(name)
            if self._services is not None:
                self._services.remove_plugin(name)
            self.plugins.pop(name, None)

    # -- other hooks --------------------------------------------------------------------------
    def add_commands(self, cli: click.Group) -> None:
        """Run `register_commands`: each plugin adds to a group of its own, and its commands join
        `cli` after every plugin ran, in load order. A plugin that raises adds nothing; a command
        name already in `cli` fails the later plugin (both named)."""
        import click

        self.load()
        added: dict[str, click.Group] = {}

        def prepare(name: str) -> dict[str, Any]:
            added[name] = click.Group(cli.name)
            return {"cli": added[name]}

        def drop(name: str, _: BaseException) -> None:
            added.pop(name, None)

        self.call_each("register_commands", prepare=prepare, on_error=drop)
        owners: dict[str, str] = {}
        for name in self.plugins:
            group = added.get(name)
            if group is None:
                continue
            clash = next(
                (c for c, cmd in group.commands.items() if c in cli.commands and cli.commands[c] is not cmd), None
            )
            if clash is not None:
                other = owners.get(clash, "invokeai-core")
                self._mark_failed(
                    self.plugins[name], f"its command '{clash}' is already added by plugin '{other}'", CLASH_HINT
                )
                continue
            for cmd_name, cmd in group.commands.items():
                cli.add_command(cmd, cmd_name)
                owners[cmd_name] = name

    def call_startup(self, invoker: Invoker) -> None:
        self.load()
        self.call_each("startup", {"invoker": invoker})

    def call_shutdown(self, invoker: Invoker) -> None:
        self.call_each("shutdown", {"invoker": invoker})

    def plugin_list(self) -> list[PluginInfo]:
        """Every plugin with its status (loads the registries so node and service errors show)."""
        self.load()
        _ = self.registry
        _ = self.service_registry
        return list(self.plugins.values())
