"""Service implementations registered by plugins, by kind and name, as dotted paths.

Like fsspec's registry: registering is cheap (a string), and the class behind a name is imported
only when configuration selects it, so an installed-but-unused backend costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from invokeai_core.errors import DuplicateRegistrationError, ServiceUnavailableError

#: Implementations provided by distributions that may not be installed, to name them in errors.
KNOWN_EXTERNAL: dict[tuple[str, str], str] = {
    ("images", "s3"): "invokeai-s3",
    ("models", "local"): "invokeai-diffusers",
}


@dataclass(frozen=True)
class ServiceImpl:
    kind: str
    name: str
    path: str
    plugin: str
    description: str = ""
    install_hint: str | None = None
    default: bool = False


class ServiceRegistry:
    def __init__(self) -> None:
        self._impls: dict[tuple[str, str], ServiceImpl] = {}

    def check(self, impl: ServiceImpl) -> None:
        existing = self._impls.get((impl.kind, impl.name))
        if existing is not None and existing.plugin != impl.plugin:
            raise DuplicateRegistrationError(f"{impl.kind} implementation", impl.name, existing.plugin, impl.plugin)
        if ":" not in impl.path:
            raise ServiceUnavailableError(
                f"plugin '{impl.plugin}' registered {impl.kind} '{impl.name}' with path '{impl.path}'; "
                "use 'package.module:ClassName'"
            )

    def add(self, impl: ServiceImpl) -> None:
        self.check(impl)
        self._impls[(impl.kind, impl.name)] = impl

    def remove_plugin(self, plugin: str) -> None:
        self._impls = {k: v for k, v in self._impls.items() if v.plugin != plugin}

    def kinds(self) -> list[str]:
        return sorted({k for k, _ in self._impls})

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self._impls if k == kind)

    def all(self) -> list[ServiceImpl]:
        return [self._impls[k] for k in sorted(self._impls)]

    def default_name(self, kind: str) -> str | None:
        for (k, n), impl in sorted(self._impls.items()):
            if k == kind and impl.default:
                return n
        names = self.names(kind)
        return names[0] if len(names) == 1 else None

    def get(self, kind: str, name: str) -> ServiceImpl:
        impl = self._impls.get((kind, name))
        if impl is not None:
            return impl
        known = ", ".join(self.names(kind)) or "none"
        dist = KNOWN_EXTERNAL.get((kind, name))
        hint = (
            f"install the plugin that provides it: pip install {dist}"
            if dist
            else "install the plugin that provides it (see `invokeai plugins`)"
        )
        raise ServiceUnavailableError(f"unknown {kind} implementation '{name}' (available: {known}); {hint}")

    def load_class(self, kind: str, name: str) -> type:
        impl = self.get(kind, name)
        module_name, _, attr = impl.path.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = module
            for part in attr.split("."):
                cls = getattr(cls, part)
        except ImportError as e:
            hint = impl.install_hint or f"reinstall the plugin '{impl.plugin}'"
            missing = f" (missing module '{e.name}')" if getattr(e, "name", None) else ""
            raise ServiceUnavailableError(
                f"{kind} implementation '{name}' from plugin '{impl.plugin}' cannot be imported{missing}: {hint}"
            ) from None
        except AttributeError:
            raise ServiceUnavailableError(
                f"{kind} implementation '{name}': '{impl.path}' does not exist (plugin '{impl.plugin}')"
            ) from None
        if not isinstance(cls, type):
            raise ServiceUnavailableError(f"{kind} implementation '{name}': '{impl.path}' is not a class")
        return cls
