"""Pixel filters (blur, multiply, lerp, inverse lerp, invert), checked pixel by pixel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

Put = Callable[[Image.Image], dict[str, str]]
Get = Callable[[Any], Image.Image]


def pixels(image: Image.Image) -> list[Any]:
    """Every pixel, row by row."""
    return [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]


def _dot() -> Image.Image:
    """A white pixel in the middle of a black 21x21 image."""
    image = Image.new("L", (21, 21), 0)
    image.putpixel((10, 10), 255)
    return image


@pytest.mark.parametrize("blur_type", ["gaussian", "box"])
def test_img_blur_spreads_a_dot(run_node: Callable[..., Any], put_image: Put, get_image: Get, blur_type: str) -> None:
    out = run_node("img_blur", image=put_image(_dot()), radius=2, blur_type=blur_type)
    image = get_image(out.image)
    assert image.size == (21, 21) and image.mode == "L"
    center, near, far = image.getpixel((10, 10)), image.getpixel((11, 10)), image.getpixel((0, 0))
    assert 0 < center < 255 and 0 < near <= center and far == 0


def test_box_and_gaussian_differ_and_radius_zero_keeps_the_image(
    run_node: Callable[..., Any], put_image: Put, get_image: Get
) -> None:
    field = put_image(_dot())
    box = get_image(run_node("img_blur", image=field, radius=1, blur_type="box").image)
    assert box.getpixel((11, 11)) == round(255 / 9)  # the average of a 3x3 square
    gauss = get_image(run_node("img_blur", image=field, radius=1, blur_type="gaussian").image)
    assert gauss.tobytes() != box.tobytes()
    same = get_image(run_node("img_blur", image=field, radius=0).image)
    assert same.tobytes() == _dot().tobytes()


def test_img_blur_bad_input(refused: Callable[..., Any]) -> None:
    assert refused("img_blur", image={"image_name": "x.png"}, radius=-1).field == "radius"
    assert refused("img_blur", image={"image_name": "x.png"}, blur_type="motion").field == "blur_type"


def test_img_blur_expands_a_palette_image(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    palette = Image.new("RGB", (9, 9), (200, 0, 0)).convert("P")
    image = get_image(run_node("img_blur", image=put_image(palette), radius=1).image)
    assert image.mode == "RGB" and image.getpixel((4, 4))[0] > 150


def test_img_mul(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    first = put_image(Image.new("RGB", (2, 2), (200, 100, 255)))
    half_gray = put_image(Image.new("L", (2, 2), 128))  # converted to RGB first
    image = get_image(run_node("img_mul", image1=first, image2=half_gray).image)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (100, 50, 128)


def test_img_mul_needs_images_of_one_size(node_error: Callable[..., Any], put_image: Put) -> None:
    err = node_error("img_mul", image1=put_image(Image.new("RGB", (2, 2))), image2=put_image(Image.new("RGB", (3, 2))))
    assert err.message == "img_mul: input 'image2': the images differ in size (2x2 and 3x2)"


def test_img_lerp_maps_0_255_onto_min_max(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    source = Image.new("RGBA", (3, 1))
    source.putdata([(0, 0, 0, 0), (255, 255, 255, 255), (51, 102, 204, 255)])
    image = get_image(run_node("img_lerp", image=put_image(source), min=50, max=100).image)
    assert pixels(image) == [(50, 50, 50, 50), (100, 100, 100, 100), (60, 70, 90, 100)]
    inverted = get_image(run_node("img_lerp", image=put_image(source.convert("RGB")), min=255, max=0).image)
    assert inverted.getpixel((0, 0)) == (255, 255, 255) and inverted.getpixel((1, 0)) == (0, 0, 0)


def test_img_ilerp_stretches_min_max_to_0_255(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    source = Image.new("L", (4, 1))
    source.putdata([10, 50, 75, 200])
    image = get_image(run_node("img_ilerp", image=put_image(source), min=50, max=100).image)
    assert pixels(image) == [0, 0, 128, 255]  # clipped below min and above max


def test_lerp_then_ilerp_round_trips(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    source = Image.new("L", (256, 1))
    source.putdata(list(range(256)))
    lerped = run_node("img_lerp", image=put_image(source), min=0, max=255).image
    assert pixels(get_image(lerped)) == list(range(256))
    squeezed = run_node("img_lerp", image=put_image(source), min=64, max=191).image
    back = get_image(run_node("img_ilerp", image={"image_name": squeezed.image_name}, min=64, max=191).image)
    assert all(abs(a - b) <= 2 for a, b in zip(pixels(back), range(256), strict=True))


def test_img_ilerp_needs_max_above_min(refused: Callable[..., Any]) -> None:
    err = refused("img_ilerp", image={"image_name": "x.png"}, min=100, max=100)
    assert err.node_id == "n" and err.field == "max" and "must be greater than min (100)" in str(err)
    assert refused("img_lerp", image={"image_name": "x.png"}, max=256).field == "max"


def test_img_invert_keeps_alpha(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    rgba = get_image(run_node("img_invert", image=put_image(Image.new("RGBA", (1, 1), (10, 20, 30, 40)))).image)
    assert rgba.getpixel((0, 0)) == (245, 235, 225, 40)
    gray = get_image(run_node("img_invert", image=put_image(Image.new("L", (1, 1), 0))).image)
    assert gray.mode == "L" and gray.getpixel((0, 0)) == 255
    bw = get_image(run_node("img_invert", image=put_image(Image.new("1", (1, 1), 1))).image)
    assert bw.mode == "L" and bw.getpixel((0, 0)) == 0
