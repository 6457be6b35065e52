"""Type compatibility between an output field and an input field (invokeai_core.typecompat)."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from nodes_for_tests import Animal, Dog
from pydantic import BaseModel

from invokeai_core.invocations.fields import ImageField
from invokeai_core.typecompat import (
    are_types_compatible,
    is_list_type,
    list_element_type,
    strip_annotated,
    type_name,
)


class Puppy(Dog):
    pass


class Cat(Animal):
    pass


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (int, int),
        (str, str),
        (ImageField, ImageField),
        (list[int], list[int]),
        (dict[str, int], dict[str, int]),
    ],
)
def test_equal_types_are_compatible(src, dst):
    assert are_types_compatible(src, dst)


@pytest.mark.parametrize("other", [int, str, list[int], ImageField, int | None, dict[str, list[float]]])
def test_any_on_either_side(other):
    assert are_types_compatible(Any, other)
    assert are_types_compatible(other, Any)


def test_subclass_into_base_but_not_base_into_subclass():
    assert are_types_compatible(Dog, Animal)
    assert are_types_compatible(Puppy, Animal)
    assert are_types_compatible(bool, int)
    assert not are_types_compatible(Animal, Dog)
    assert not are_types_compatible(Cat, Dog)
    assert not are_types_compatible(int, bool)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (int, int | str),
        (str, int | str),
        (int, Optional[int]),  # the typing spelling
        (int, int | None),
        (type(None), int | None),
        (Dog, Union[Animal, int]),  # the typing spelling
        (int, float | None),  # int -> float inside a union
        (int | None, int | str | None),  # every member fits
    ],
)
def test_member_of_a_union(src, dst):
    assert are_types_compatible(src, dst)


def test_union_not_containing_the_type():
    assert not are_types_compatible(str, int | None)
    assert not are_types_compatible(float, int | None)


def test_int_to_float_allowed_float_to_int_refused():
    assert are_types_compatible(int, float)
    assert not are_types_compatible(float, int)
    assert not are_types_compatible(str, float)


def test_literal_into_str_and_literals():
    assert are_types_compatible(Literal["fast", "slow"], str)
    assert are_types_compatible(Literal[1, 2], int)
    assert not are_types_compatible(Literal["a", 1], str)
    assert not are_types_compatible(Literal["fast"], int)
    # a Literal into a wider Literal fits; into a narrower one it does not
    assert are_types_compatible(Literal["fast"], Literal["fast", "slow"])
    assert not are_types_compatible(Literal["fast", "slow"], Literal["fast"])
    # a plain str may hold any value: it does not fit a Literal input
    assert not are_types_compatible(str, Literal["fast", "slow"])


def test_list_elements_are_checked():
    assert are_types_compatible(list[int], list[float])
    assert not are_types_compatible(list[float], list[int])
    assert not are_types_compatible(list[str], list[int])
    assert are_types_compatible(list[Dog], list[Animal])
    assert not are_types_compatible(list[Animal], list[Dog])
    assert are_types_compatible(list[list[int]], list[list[float]])
    assert not are_types_compatible(list[list[float]], list[list[int]])
    assert are_types_compatible(typing.List[int], list[float])  # noqa: UP006
    assert not are_types_compatible(list[int], int)
    assert not are_types_compatible(int, list[int])
    assert not are_types_compatible(list[int], dict[str, int])


def test_other_containers():
    assert are_types_compatible(dict[str, int], dict[str, float])
    assert not are_types_compatible(dict[str, float], dict[str, int])
    assert are_types_compatible(tuple[int, int], tuple[float, ...])
    assert not are_types_compatible(tuple[int, str], tuple[int, ...])
    assert not are_types_compatible(tuple[int, ...], tuple[int, int])
    assert are_types_compatible(list, list[int])  # a bare container's elements are unknown


def test_union_output_into_narrower_input_refused():
    assert not are_types_compatible(int | str, int)
    assert not are_types_compatible(int | str, str)
    assert not are_types_compatible(int | None, int)
    assert not are_types_compatible(Animal | int, Dog | int)
    # ... but into an input that takes every member, it fits
    assert are_types_compatible(int | str, str | int)
    assert are_types_compatible(int | str, float | str)


def test_annotated_constraints_are_ignored():
    assert are_types_compatible(Annotated[int, "meta"], float)
    assert are_types_compatible(int, Annotated[float, "meta"])
    assert not are_types_compatible(Annotated[float, "meta"], int)


def test_unhashable_annotations_do_not_crash():
    # Annotated metadata may be unhashable (a dict): the cache must not turn that into a TypeError,
    # not even when the annotation is nested inside a container.
    meta: dict[str, Any] = {"ui": "slider"}
    assert are_types_compatible(Annotated[int, meta], float)
    assert are_types_compatible(list[Annotated[int, meta]], list[float])
    assert not are_types_compatible(list[Annotated[float, meta]], list[int])


def test_pydantic_models():
    class A(BaseModel):
        x: int

    class B(A):
        y: int = 0

    assert are_types_compatible(B, A)
    assert not are_types_compatible(A, B)
    assert not are_types_compatible(A, ImageField)


def test_list_helpers():
    assert is_list_type(list[int])
    assert is_list_type(list)
    assert is_list_type(typing.List[str])  # noqa: UP006
    assert is_list_type(Annotated[list[int], "x"])
    assert not is_list_type(int)
    assert not is_list_type(tuple[int, ...])
    assert list_element_type(list[int]) is int
    assert list_element_type(list) is Any
    assert list_element_type(Any) is Any
    assert list_element_type(list[int] | None) is int
    assert list_element_type(list[list[str]]) == list[str]
    assert strip_annotated(Annotated[Annotated[int, 1], 2]) is int


def test_type_names():
    assert type_name(int) == "int"
    assert type_name(Any) == "Any"
    assert type_name(list[int]) == "list[int]"
    assert type_name(int | None) == "int | None"
    assert type_name(Literal["a", "b"]) == "Literal['a', 'b']"
    assert type_name(dict[str, list[float]]) == "dict[str, list[float]]"
    assert type_name(ImageField) == "ImageField"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(Annotated[list[str], "x"]) == "list[str]"
