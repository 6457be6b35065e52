"""Mode conversion, channel extraction, masks from alpha and channel offsets, on real pixels."""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from typing import Any, get_args

import pytest
from invokeai_nodes.image_channels import CHANNELS, ChannelName
from PIL import Image

Put = Callable[[Image.Image], dict[str, str]]
Get = Callable[[Any], Image.Image]


def pixels(image: Image.Image) -> list[Any]:
    """Every pixel, row by row."""
    return [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]


@pytest.mark.parametrize(
    ("mode", "pixel"),
    [("L", 76), ("LA", (76, 255)), ("RGB", (255, 0, 0)), ("RGBA", (255, 0, 0, 255))],
)
def test_img_conv(run_node: Callable[..., Any], put_image: Put, get_image: Get, mode: str, pixel: Any) -> None:
    red = put_image(Image.new("RGB", (2, 2), (255, 0, 0)))
    image = get_image(run_node("img_conv", image=red, mode=mode).image)
    assert image.mode == mode and image.getpixel((0, 0)) == pixel


def test_img_conv_to_black_and_white_dithers(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    gray = put_image(Image.new("L", (10, 10), 128))
    image = get_image(run_node("img_conv", image=gray, mode="1").image)
    assert image.mode == "1" and set(pixels(image)) == {0, 255}
    assert 40 <= sum(1 for p in pixels(image) if p) <= 60  # about half the pixels are white


def test_img_conv_to_an_adaptive_palette_keeps_the_colors(
    run_node: Callable[..., Any], put_image: Put, get_image: Get
) -> None:
    source = Image.new("RGB", (2, 1))
    source.putdata([(12, 34, 56), (200, 150, 100)])
    image = get_image(run_node("img_conv", image=put_image(source), mode="P").image)
    assert image.mode == "P" and pixels(image.convert("RGB")) == [(12, 34, 56), (200, 150, 100)]


@pytest.mark.parametrize("mode", ["CMYK", "HSV", "XYZ", "rgb"])
def test_img_conv_refuses_modes_the_store_cannot_keep(refused: Callable[..., Any], mode: str) -> None:
    err = refused("img_conv", image={"image_name": "x.png"}, mode=mode)
    assert err.node_id == "n" and err.field == "mode"


def test_img_chan(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    field = put_image(Image.new("RGBA", (2, 2), (10, 20, 30, 40)))
    for channel, value in (("R", 10), ("G", 20), ("B", 30), ("A", 40)):
        image = get_image(run_node("img_chan", image=field, channel=channel).image)
        assert image.mode == "L" and image.getpixel((1, 1)) == value
    # a grayscale image without alpha: R = G = B = the gray, A = opaque
    gray = put_image(Image.new("L", (1, 1), 99))
    assert get_image(run_node("img_chan", image=gray, channel="G").image).getpixel((0, 0)) == 99
    assert get_image(run_node("img_chan", image=gray, channel="A").image).getpixel((0, 0)) == 255


def test_img_chan_refuses_unknown_channels(refused: Callable[..., Any]) -> None:
    assert refused("img_chan", image={"image_name": "x.png"}, channel="X").field == "channel"


def test_mask_from_alpha(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    source = Image.new("RGBA", (2, 1))
    source.putdata([(1, 2, 3, 0), (1, 2, 3, 255)])
    field = put_image(source)
    mask = get_image(run_node("mask_from_alpha", image=field).image)
    assert mask.mode == "L" and pixels(mask) == [0, 255]
    inverted = get_image(run_node("mask_from_alpha", image=field, invert=True).image)
    assert pixels(inverted) == [255, 0]
    opaque = get_image(run_node("mask_from_alpha", image=put_image(Image.new("RGB", (1, 1)))).image)
    assert opaque.getpixel((0, 0)) == 255


def test_the_channel_list_matches_its_choices() -> None:
    assert list(get_args(ChannelName)) == list(CHANNELS)


def test_img_channel_offset_on_rgb_channels(run_node: Callable[..., Any], put_image: Put, get_image: Get) -> None:
    field = put_image(Image.new("RGB", (1, 1), (100, 200, 250)))
    image = get_image(run_node("img_channel_offset", image=field, channel="red", offset=-30).image)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (70, 200, 250)
    image = get_image(run_node("img_channel_offset", image=field, channel="blue", offset=100).image)
    assert image.getpixel((0, 0)) == (100, 200, 255)  # clipped
    image = get_image(run_node("img_channel_offset", image=field, channel="alpha", offset=-55).image)
    assert image.mode == "RGBA" and image.getpixel((0, 0)) == (100, 200, 250, 200)


def test_img_channel_offset_shifts_hue_around_the_wheel(
    run_node: Callable[..., Any], put_image: Put, get_image: Get
) -> None:
    red = put_image(Image.new("RGB", (1, 1), (255, 0, 0)))
    # a third of the wheel (256 / 3) turns red into green
    green = get_image(run_node("img_channel_offset", image=red, channel="hue", offset=85).image).getpixel((0, 0))
    hue = colorsys.rgb_to_hsv(*(c / 255 for c in green))[0]
    assert abs(hue - 1 / 3) < 0.01 and green[1] > 240
    # wrapping: -85 from red is the same as +171 (blue)
    back = get_image(run_node("img_channel_offset", image=red, channel="hue", offset=-85).image).getpixel((0, 0))
    assert back[2] > 240 and back[0] < 10


def test_img_channel_offset_keeps_alpha_through_other_color_spaces(
    run_node: Callable[..., Any], put_image: Put, get_image: Get
) -> None:
    field = put_image(Image.new("RGBA", (1, 1), (200, 100, 50, 77)))
    out = get_image(run_node("img_channel_offset", image=field, channel="saturation", offset=-255).image)
    r, g, b, a = out.getpixel((0, 0))
    assert a == 77 and r == g == b  # no saturation left: gray
    out = get_image(run_node("img_channel_offset", image=field, channel="value", offset=-255).image)
    assert out.getpixel((0, 0)) == (0, 0, 0, 77)


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_every_channel_runs_and_zero_offset_keeps_the_image(
    run_node: Callable[..., Any], put_image: Put, get_image: Get, channel: str
) -> None:
    source = Image.new("RGB", (1, 1), (200, 100, 50))
    out = get_image(run_node("img_channel_offset", image=put_image(source), channel=channel, offset=0).image)
    pixel = out.convert("RGB").getpixel((0, 0))
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, (200, 100, 50), strict=True)), (channel, pixel)
    moved = get_image(run_node("img_channel_offset", image=put_image(source), channel=channel, offset=40).image)
    assert moved.convert("RGB").getpixel((0, 0)) != (200, 100, 50) or channel == "alpha", channel


def test_img_channel_offset_bad_input(refused: Callable[..., Any]) -> None:
    assert refused("img_channel_offset", image={"image_name": "x.png"}, offset=256).field == "offset"
    assert refused("img_channel_offset", image={"image_name": "x.png"}, channel="Red (RGBA)").field == "channel"
