"""Type compatibility between an output field and an input field.

The rules (DESIGN.md): equal types; `Any` on either side; a subclass into its base; a member of a
union into that union; `int -> float` (never `float -> int`); a `Literal` into the type of its
values; generic containers element-wise (`list[int] -> list[float]`). A union output fits an input
only if every one of its members fits. Results are cached: graphs check the same pairs many times.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

_NONE = type(None)
_CONTAINER_ALIASES: dict[Any, Any] = {
    typing.List: list,  # noqa: UP006 - normalising the legacy alias is the point
    typing.Dict: dict,  # noqa: UP006
    typing.Tuple: tuple,  # noqa: UP006
    typing.Set: set,  # noqa: UP006
}


def strip_annotated(tp: Any) -> Any:
    """Remove `Annotated[...]` wrappers (constraints do not change compatibility)."""
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def is_union(tp: Any) -> bool:
    origin = get_origin(tp)
    return origin is Union or origin is types.UnionType


def _origin(tp: Any) -> Any:
    origin = get_origin(tp) or tp
    return _CONTAINER_ALIASES.get(origin, origin)


def is_list_type(tp: Any) -> bool:
    """True for `list`, `list[T]`, `typing.List[T]` (after stripping `Annotated`)."""
    tp = strip_annotated(tp)
    return tp is list or _origin(tp) is list


def list_element_type(tp: Any) -> Any:
    """The element type of a list type (`Any` for a bare `list`, `Any` for `Any`)."""
    tp = strip_annotated(tp)
    if tp is Any:
        return Any
    if is_union(tp):
        members = [m for m in get_args(tp) if m is not _NONE and is_list_type(m)]
        if len(members) == 1:
            return list_element_type(members[0])
        return Any
    args = get_args(tp)
    return args[0] if args else Any


@functools.lru_cache(maxsize=4096)
def _compatible_cached(src: Any, dst: Any) -> bool:
    return _compatible(src, dst)


def are_types_compatible(src: Any, dst: Any) -> bool:
    """Whether a value of type `src` (an output field) may feed an input of type `dst`."""
    try:
        return _compatible_cached(src, dst)
    except TypeError:
        # An unhashable annotation (e.g. `Annotated[int, {...}]`, possibly nested): compute without
        # the cache; the recursion below comes back here for each part, so hashable parts still hit it.
        return _compatible(src, dst)


def _compatible(src: Any, dst: Any) -> bool:
    src = strip_annotated(src)
    dst = strip_annotated(dst)
    if src is Any or dst is Any or src == dst:
        return True
    if is_union(src):
        return all(are_types_compatible(m, dst) for m in get_args(src))
    if is_union(dst):
        return any(are_types_compatible(src, m) for m in get_args(dst))
    if get_origin(src) is Literal:
        values = get_args(src)
        if get_origin(dst) is Literal:
            return set(values) <= set(get_args(dst))
        return isinstance(dst, type) and all(isinstance(v, dst) for v in values)
    if get_origin(dst) is Literal:
        return False
    if src is int and dst is float:
        return True
    s_origin, d_origin = _origin(src), _origin(dst)
    s_args, d_args = get_args(src), get_args(dst)
    if s_args or d_args:
        if not (isinstance(s_origin, type) and isinstance(d_origin, type)):
            return False
        if not issubclass(s_origin, d_origin):
            return False
        if not d_args:
            return True
        if not s_args:
            # A bare container into a parameterised one: elements unknown, accept (like Any).
            return True
        if d_origin is tuple and Ellipsis in d_args:
            return all(are_types_compatible(a, d_args[0]) for a in s_args if a is not Ellipsis)
        if len(s_args) != len(d_args):
            return False
        return all(are_types_compatible(a, b) for a, b in zip(s_args, d_args, strict=True))
    if isinstance(src, type) and isinstance(dst, type):
        if src is bool and dst is float:
            return True
        return issubclass(src, dst)
    return False


def type_name(tp: Any) -> str:
    """A short readable name for a type, for error messages and UIs."""
    tp = strip_annotated(tp)
    if tp is Any:
        return "Any"
    if tp is _NONE:
        return "None"
    if tp is Ellipsis:
        return "..."
    if is_union(tp):
        return " | ".join(type_name(a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in get_args(tp)) + "]"
    if origin is not None:
        name = getattr(_origin(tp), "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))
