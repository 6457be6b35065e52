"""Image primitives and geometry nodes (blank, resize, scale, crop, paste) on real images: sizes,
modes and pixels are checked in what the image service stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

Put = Callable[[Image.Image], dict[str, str]]


def test_image_primitive_reads_the_record(run_node: Callable[..., Any], put_image: Put) -> None:
    field = put_image(Image.new("RGB", (30, 20), (1, 2, 3)))
    out = run_node("image", image=field)
    assert out.image.image_name == field["image_name"] and (out.width, out.height) == (30, 20)


def test_image_collection_primitive(run_node: Callable[..., Any], put_image: Put) -> None:
    fields = [put_image(Image.new("L", (4, 4))), put_image(Image.new("L", (5, 5)))]
    out = run_node("image_collection", collection=fields)
    assert [f.image_name for f in out.collection] == [f["image_name"] for f in fields]


def test_an_unknown_image_is_a_clear_node_error(node_error: Callable[..., Any], put_image: Put) -> None:
    err = node_error("image", image={"image_name": "nope.png"})
    assert err.type == "ImageNotFoundError"
    assert err.message == "image: input 'image' names image 'nope.png', which does not exist"
    ok = put_image(Image.new("L", (1, 1)))
    err = node_error("image_collection", collection=[ok, {"image_name": "gone.png"}])
    assert "input 'collection[1]'" in err.message
    assert "'gone.png'" in node_error("img_blur", image={"image_name": "gone.png"}).message


def test_blank_image(run_node: Callable[..., Any], get_image: Callable[..., Image.Image], get_record: Any) -> None:
    out = run_node("blank_image", width=40, height=30, color={"r": 255, "g": 0, "b": 0})
    assert (out.width, out.height) == (40, 30)
    image = get_image(out.image)
    assert image.mode == "RGB" and image.size == (40, 30) and image.getpixel((39, 29)) == (255, 0, 0)
    assert get_record(out.image).is_intermediate is True

    rgba = get_image(run_node("blank_image", width=2, height=2, mode="RGBA", color="#00ff0080").image)
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 255, 0, 128)
    gray = get_image(run_node("blank_image", width=2, height=2, mode="L", color="#ffffff").image)
    assert gray.mode == "L" and gray.getpixel((1, 1)) == 255
    la = get_image(run_node("blank_image", width=2, height=2, mode="LA", color="#00000000").image)
    assert la.mode == "LA" and la.getpixel((0, 0)) == (0, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": -1}, "width"),
        ({"height": 0}, "height"),
        ({"width": 100000}, "width"),
        ({"mode": "CMYK"}, "mode"),
        ({"color": {"r": -1, "g": 0, "b": 0}}, "color"),
    ],
)
def test_blank_image_bad_input_is_refused_naming_the_field(
    refused: Callable[..., Any], fields: dict[str, Any], field: str
) -> None:
    err = refused("blank_image", **fields)
    assert err.node_id == "n" and err.field == field


def test_img_resize(
    run_node: Callable[..., Any], refused: Callable[..., Any], put_image: Put, get_image: Callable[..., Image.Image]
) -> None:
    source = Image.new("RGB", (10, 10), (0, 0, 0))
    source.paste((255, 255, 255), (5, 0, 10, 10))  # right half white
    out = run_node("img_resize", image=put_image(source), width=20, height=6, resample_mode="nearest")
    assert (out.width, out.height) == (20, 6)
    image = get_image(out.image)
    assert image.size == (20, 6) and image.getpixel((0, 3)) == (0, 0, 0) and image.getpixel((19, 3)) == (255, 255, 255)
    assert {image.getpixel((x, 3)) for x in range(20)} == {(0, 0, 0), (255, 255, 255)}  # nearest: no blending
    field = put_image(source)
    smooth = get_image(run_node("img_resize", image=field, width=7, height=4, resample_mode="bilinear").image)
    assert smooth.size == (7, 4)
    assert any(0 < smooth.getpixel((x, 1))[0] < 255 for x in range(7))  # a smooth filter blends at the edge
    assert refused("img_resize", image=put_image(source), resample_mode="cubic").field == "resample_mode"


def test_img_scale(
    run_node: Callable[..., Any], refused: Callable[..., Any], put_image: Put, get_image: Callable[..., Image.Image]
) -> None:
    field = put_image(Image.new("RGB", (64, 32), (9, 9, 9)))
    out = run_node("img_scale", image=field, scale_factor=1.5)
    assert (out.width, out.height) == (96, 48) and get_image(out.image).getpixel((50, 20)) == (9, 9, 9)
    out = run_node("img_scale", image=field, scale_factor=0.25, resample_mode="box")
    assert (out.width, out.height) == (16, 8)
    assert refused("img_scale", image=field, scale_factor=0).field == "scale_factor"
    assert refused("img_scale", image=field, scale_factor=-2).field == "scale_factor"


def test_img_scale_to_nothing_is_a_clear_node_error(node_error: Callable[..., Any], put_image: Put) -> None:
    err = node_error("img_scale", image=put_image(Image.new("RGB", (10, 10))), scale_factor=0.01)
    assert err.message == "img_scale: the result would be 0x0 pixels; each side must be 1..16384"


def test_img_crop(run_node: Callable[..., Any], put_image: Put, get_image: Callable[..., Image.Image]) -> None:
    source = Image.new("RGB", (8, 8), (0, 0, 0))
    source.putpixel((3, 2), (255, 0, 0))
    out = run_node("img_crop", image=put_image(source), x=3, y=2, width=5, height=6)
    assert (out.width, out.height) == (5, 6)
    image = get_image(out.image)
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((1, 0)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("box", "field", "words"),
    [
        ({"x": 8, "y": 0, "width": 1, "height": 1}, "x", "x=8 is outside the 8x8 image"),
        ({"x": 0, "y": 9, "width": 1, "height": 1}, "y", "y=9 is outside the 8x8 image"),
        ({"x": 4, "y": 0, "width": 5, "height": 1}, "width", "x + width = 9 is past the right edge of the 8x8 image"),
        ({"x": 0, "y": 2, "width": 1, "height": 7}, "height", "(at most 6 fits)"),
    ],
)
def test_a_crop_outside_the_image_is_a_node_error_naming_the_field(
    node_error: Callable[..., Any], put_image: Put, box: dict[str, int], field: str, words: str
) -> None:
    err = node_error("img_crop", image=put_image(Image.new("RGB", (8, 8))), **box)
    assert err.type == "InvalidInputError"
    assert err.message.startswith(f"img_crop: input '{field}': ") and words in err.message


def test_a_negative_crop_origin_is_refused(refused: Callable[..., Any]) -> None:
    assert refused("img_crop", image={"image_name": "x.png"}, x=-1).field == "x"
    assert refused("img_crop", image={"image_name": "x.png"}, height=0).field == "height"


def test_img_paste_within_the_base(run_node: Callable[..., Any], put_image: Put, get_image: Any) -> None:
    base = put_image(Image.new("RGB", (10, 10), (0, 0, 255)))
    red = put_image(Image.new("RGB", (4, 4), (255, 0, 0)))
    out = run_node("img_paste", base_image=base, image=red, x=2, y=3)
    image = get_image(out.image)
    assert image.mode == "RGB" and image.size == (10, 10)
    assert image.getpixel((2, 3)) == (255, 0, 0) and image.getpixel((5, 6)) == (255, 0, 0)
    assert image.getpixel((1, 3)) == (0, 0, 255) and image.getpixel((6, 3)) == (0, 0, 255)


def test_img_paste_through_a_mask(run_node: Callable[..., Any], put_image: Put, get_image: Any) -> None:
    base = put_image(Image.new("RGB", (4, 4), (0, 0, 0)))
    white = put_image(Image.new("RGB", (4, 4), (255, 255, 255)))
    mask = Image.new("L", (4, 4), 0)
    mask.paste(255, (0, 0, 2, 4))  # left half pastes
    mask.putpixel((3, 3), 128)  # gray blends
    image = get_image(run_node("img_paste", base_image=base, image=white, mask=put_image(mask)).image)
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((3, 0)) == (0, 0, 0)
    assert image.getpixel((3, 3)) == (128, 128, 128)


def test_img_paste_uses_the_pasted_images_alpha_without_a_mask(
    run_node: Callable[..., Any], put_image: Put, get_image: Any
) -> None:
    base = put_image(Image.new("RGB", (2, 1), (0, 0, 0)))
    half = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    half.putpixel((1, 0), (255, 0, 0, 0))  # transparent: the base shows
    image = get_image(run_node("img_paste", base_image=base, image=put_image(half), crop=True).image)
    assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0) and image.convert("RGB").getpixel((1, 0)) == (0, 0, 0)


def test_img_paste_grows_the_canvas_unless_cropped(
    run_node: Callable[..., Any], put_image: Put, get_image: Any
) -> None:
    base = put_image(Image.new("RGB", (4, 4), (0, 0, 255)))
    red = put_image(Image.new("RGB", (3, 3), (255, 0, 0)))
    out = run_node("img_paste", base_image=base, image=red, x=-2, y=2)
    assert (out.width, out.height) == (6, 5)
    image = get_image(out.image)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 2)) == (255, 0, 0, 255)  # the pasted image, at its (shifted) place
    assert image.getpixel((5, 0)) == (0, 0, 255, 255)  # the base, shifted right by 2
    assert image.getpixel((0, 0)) == (0, 0, 0, 0)  # new area: transparent
    cropped = get_image(run_node("img_paste", base_image=base, image=red, x=-2, y=2, crop=True).image)
    assert cropped.size == (4, 4) and cropped.mode == "RGB"
    assert cropped.getpixel((0, 2)) == (255, 0, 0) and cropped.getpixel((0, 3)) == (255, 0, 0)  # x -2..0 shows
    assert cropped.getpixel((1, 2)) == (0, 0, 255) and cropped.getpixel((0, 1)) == (0, 0, 255)


def test_img_paste_refuses_a_mask_of_another_size(node_error: Callable[..., Any], put_image: Put) -> None:
    base = put_image(Image.new("RGB", (4, 4)))
    err = node_error("img_paste", base_image=base, image=base, mask=put_image(Image.new("L", (2, 2))))
    assert err.message == "img_paste: input 'mask': the mask is 2x2, the image 4x4"
