"""Single-file checkpoints: the shipped offline configs, loading, pixels, pickles and bad files.

The checkpoints are written by the tests themselves (`ldm_layout`) from the small random-weight
folders, so a checkpoint must give exactly the pixels of the folder it came from, and of diffusers'
own `from_single_file` pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import granular_txt2img
from ldm_layout import folder_to_checkpoint
from stages import assert_equal_stages, our_stages

SIZE = 64
STEPS = 3

# Parameter counts of the published models (UNet, VAE, text encoders), from their model cards and
# the diffusers and transformers docs; a config with a wrong width, depth or layer count misses them.
PUBLISHED_SIZES = {
    "sd-1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd-2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


def build_sd2_style(path: Path) -> Path:
    """A tiny SD-2-style folder: OpenCLIP-like text encoder (gelu), linear projections, v-prediction."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from invokeai_diffusers.models.demo import offline_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 32, 64, 64],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=48,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=514,
            hidden_act="gelu",
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=offline_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def checkpoints(model_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("checkpoints")
    sd2 = build_sd2_style(out / "tiny-sd2")
    return {
        "sd": folder_to_checkpoint(model_folders["sd"], out / "tiny-sd.safetensors", base="sd-1"),
        "sdxl": folder_to_checkpoint(model_folders["sdxl"], out / "tiny-sdxl.safetensors", base="sdxl"),
        "sd2": folder_to_checkpoint(sd2, out / "tiny-sd2.safetensors", base="sd-2"),
        "sd2-folder": sd2,
        "sd-ckpt": folder_to_checkpoint(model_folders["sd"], out / "tiny-sd.ckpt", base="sd-1"),
    }


# -- the shipped configs ---------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["sd-1", "sd-2", "sdxl"])
def test_shipped_configs_build_the_published_architectures(base: str, tmp_path: Path) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from invokeai_diffusers.models.single_file import config_folder
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = config_folder(tmp_path, base, "normal", None)
    index = json.loads((folder / "model_index.json").read_text())
    counts = {}
    with init_empty_weights():  # shapes only, no memory
        counts["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        counts["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        counts["text_encoder"] = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        if "text_encoder_2" in index:
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            counts["text_encoder_2"] = CLIPTextModelWithProjection(config)
    sizes = {name: sum(p.numel() for p in model.parameters()) for name, model in counts.items()}
    assert sizes == PUBLISHED_SIZES[base]


def test_shipped_tokenizers_are_clips_own(tmp_path: Path) -> None:
    from invokeai_diffusers.models.single_file import config_folder
    from transformers import CLIPTokenizer

    sd1 = CLIPTokenizer.from_pretrained(config_folder(tmp_path, "sd-1", "normal", None), subfolder="tokenizer")
    sd2 = CLIPTokenizer.from_pretrained(config_folder(tmp_path, "sd-2", "normal", None), subfolder="tokenizer")
    assert len(sd1) == 49408
    # The ids every CLIP user knows: <|startoftext|> a photo of a cat <|endoftext|>.
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert sd1("A Photo of a CAT,").input_ids == [49406, 320, 1125, 539, 320, 2368, 267, 49407]
    # SD 1.x pads with <|endoftext|>, SD 2.x (OpenCLIP) with "!" (id 0), as in the published folders.
    assert sd1("cat", padding="max_length", max_length=5).input_ids[-1] == 49407
    assert sd2("cat", padding="max_length", max_length=5).input_ids[-1] == 0


def test_variants_and_prediction_types_of_the_assembled_folders(tmp_path: Path) -> None:
    from invokeai_diffusers.models.single_file import config_folder

    def read(folder: Path, rel: str) -> Any:
        return json.loads((folder / rel).read_text())

    sd2 = config_folder(tmp_path, "sd-2", "normal", None)
    assert read(sd2, "scheduler/scheduler_config.json")["prediction_type"] == "v_prediction"
    sd2_base = config_folder(tmp_path, "sd-2", "normal", "epsilon")
    assert read(sd2_base, "scheduler/scheduler_config.json")["prediction_type"] == "epsilon"
    inpaint = config_folder(tmp_path, "sdxl", "inpaint", None)
    assert read(inpaint, "unet/config.json")["in_channels"] == 9
    assert read(inpaint, "model_index.json")["_class_name"] == "StableDiffusionXLInpaintPipeline"
    assert config_folder(tmp_path, "sd-2", "normal", None) == sd2  # assembled once, reused
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folders


FULL_SIZE = os.environ.get("INVOKEAI_FULL_SIZE_TESTS") == "1"


def published_size_checkpoint(base: str, folder: Path, out: Path) -> dict[str, Any]:
    """Random fp16 weights in the published architecture of `base`, saved in the original layout.

    The extras real checkpoints carry ride along: CLIP's position ids, SD 2.x's unused 24th OpenCLIP
    block and text projection, SDXL's logit scale. Returns the source modules.
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from ldm_layout import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    generator = torch.Generator().manual_seed(0)

    def random(shape: Any) -> Any:
        return (torch.randn(shape, generator=generator) * 0.02).to(torch.float16)

    def materialize(module: Any) -> Any:
        module = module.to_empty(device="cpu").to(torch.float16)
        with torch.no_grad():
            for param in module.parameters():
                param.copy_(random(param.shape))
        return module

    with init_empty_weights():
        modules = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if base == "sdxl":
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            modules["text_encoder_2"] = CLIPTextModelWithProjection(config)
    modules = {name: materialize(module) for name, module in modules.items()}
    state = {**unet_to_ldm(modules["unet"]), **vae_to_ldm(modules["vae"])}
    if base == "sd-1":
        state.update(clip_to_ldm(modules["text_encoder"], "cond_stage_model.transformer."))
    elif base == "sd-2":
        state.update(open_clip_to_ldm(modules["text_encoder"], "cond_stage_model.model."))
        for key in [k for k in state if ".resblocks.22." in k]:
            state[key.replace(".resblocks.22.", ".resblocks.23.")] = random(state[key].shape)
        state["cond_stage_model.model.text_projection"] = random((1024, 1024))
    else:
        state.update(clip_to_ldm(modules["text_encoder"], "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(modules["text_encoder_2"], "conditioner.embedders.1.model."))
        state["conditioner.embedders.1.model.logit_scale"] = torch.tensor(4.6052)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return modules


@pytest.mark.parametrize(
    "base",
    [
        "sd-1",
        pytest.param(
            "sd-2",
            marks=[
                pytest.mark.invokeai_optional,
                pytest.mark.skipif(not FULL_SIZE, reason="INVOKEAI_FULL_SIZE_TESTS=1: 1.3B params"),
            ],
        ),
        pytest.param(
            "sdxl",
            marks=[
                pytest.mark.invokeai_optional,
                pytest.mark.skipif(not FULL_SIZE, reason="INVOKEAI_FULL_SIZE_TESTS=1: 3.5B params"),
            ],
        ),
    ],
)
def test_a_published_size_checkpoint_loads_with_the_shipped_config(base: str, tmp_path: Path) -> None:
    """The path real users take: no --config, the shipped folder, every tensor where it belongs."""
    import torch
    from invokeai_diffusers.models.manager import ModelManager
    from invokeai_diffusers.models.single_file import shipped_config
    from invokeai_diffusers.settings import DiffusersSettings

    checkpoint = tmp_path / f"{base}.safetensors"
    modules = published_size_checkpoint(base, shipped_config(base), checkpoint)
    settings = DiffusersSettings(models_dir=tmp_path / "models", precision="float16", device="cpu")
    manager = ModelManager(None, settings=settings)
    record = manager.add(checkpoint, name="real-size")
    assert (record.base, record.variant, record.format, record.config) == (base, "normal", "checkpoint", None)
    for submodel, source in modules.items():
        loaded = manager.load("real-size", submodel).state_dict()
        expected = source.state_dict()
        assert loaded.keys() == expected.keys(), submodel
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), submodel
        manager.cache.clear()
    scheduler = manager.load("real-size", "scheduler")
    assert scheduler["prediction_type"] == ("v_prediction" if base == "sd-2" else "epsilon")
    tokenizer = manager.load("real-size", "tokenizer")
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


# -- loading and generating --------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "base", "folder_key"), [("sd", "sd-1", "sd"), ("sd2", "sd-2", "sd2-folder")])
def test_a_checkpoint_gives_the_pixels_of_its_folder_and_of_diffusers_from_single_file(
    kind: str,
    base: str,
    folder_key: str,
    manager: Any,
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
    model_folders: dict[str, Path],
    checkpoints: dict[str, Path],
) -> None:
    """Every stage (stages.py, exactly) of the checkpoint's run equals its folder's run and that of
    diffusers' `StableDiffusionPipeline.from_single_file` (Euler set as diffusers documents)."""
    import diffusers
    from stages import reference_stages

    folder = model_folders[folder_key] if folder_key in model_folders else checkpoints[folder_key]
    record = manager.add(checkpoints[kind], name=f"{kind}-file", config=folder)
    assert (record.base, record.format, record.config) == (base, "checkpoint", str(folder))
    if kind != "sd":
        manager.add(folder, name=f"{kind}-folder")
    folder_model = "tiny-sd" if kind == "sd" else f"{kind}-folder"
    args = {"prompt": "a lighthouse", "negative": "fog", "seed": 11, "size": SIZE, "steps": STEPS, "scheduler": "euler"}
    pipeline = "StableDiffusionPipeline"
    from_file = our_stages(
        invokeai_invoker, invokeai_run_graph, granular_txt2img(f"{kind}-file", **args), pipeline, "euler"
    )
    from_folder = our_stages(
        invokeai_invoker, invokeai_run_graph, granular_txt2img(folder_model, **args), pipeline, "euler"
    )
    assert_equal_stages(from_file, from_folder)

    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        str(checkpoints[kind]), config=str(folder), local_files_only=True, safety_checker=None
    )
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    call = {
        "prompt": "a lighthouse",
        "negative_prompt": "fog",
        "num_inference_steps": STEPS,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(from_file, reference_stages(pipe, 11, **call))


def test_an_sdxl_checkpoint_gives_the_pixels_of_its_folder(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: dict[str, Path], checkpoints: Any
) -> None:
    manager.add(checkpoints["sdxl"], name="xl-file", config=model_folders["sdxl"])
    args = {"prompt": "dunes", "negative": "people", "seed": 5, "size": SIZE, "steps": STEPS, "scheduler": "default"}
    pipeline = "StableDiffusionXLPipeline"
    from_file = our_stages(
        invokeai_invoker, invokeai_run_graph, granular_txt2img("xl-file", sdxl=True, **args), pipeline, "default"
    )
    from_folder = our_stages(
        invokeai_invoker, invokeai_run_graph, granular_txt2img("tiny-sdxl", sdxl=True, **args), pipeline, "default"
    )
    assert_equal_stages(from_file, from_folder)  # exactly, every stage (stages.py)


def test_components_load_one_by_one_and_once(manager: Any, model_folders: Any, checkpoints: Any) -> None:
    manager.add(checkpoints["sd"], name="file", config=model_folders["sd"])
    loads = manager.cache.loads
    text_encoder = manager.load("file", "text_encoder")
    assert manager.cache.loads == loads + 1
    assert [sub for name, sub, _ in manager.cache.cached() if name == "file"] == ["text_encoder"]
    assert manager.load("file", "text_encoder") is text_encoder and manager.cache.loads == loads + 1


def test_pickle_checkpoints_need_allow_pickle_then_load_like_safetensors(
    manager: Any, model_folders: Any, checkpoints: Any
) -> None:
    import torch
    from invokeai_diffusers.models.manager import ModelInstallError

    with pytest.raises(ModelInstallError, match=r"pickles, which can run arbitrary code.*allow_pickle"):
        manager.add(checkpoints["sd-ckpt"], name="pickled", config=model_folders["sd"])
    assert manager.records.get("pickled") is None
    manager.settings.allow_pickle = True
    record = manager.add(checkpoints["sd-ckpt"], name="pickled", config=model_folders["sd"])
    assert (record.base, record.format) == ("sd-1", "checkpoint")
    manager.add(checkpoints["sd"], name="safe", config=model_folders["sd"])
    a, b = manager.load("pickled", "unet").state_dict(), manager.load("safe", "unet").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- bad input -----------------------------------------------------------------------------------
def test_a_checkpoint_the_shipped_config_cannot_hold_is_refused_with_the_way_forward(
    manager: Any, checkpoints: Any
) -> None:
    from invokeai_diffusers.models.manager import ModelInstallError

    with pytest.raises(ModelInstallError) as e:
        manager.add(checkpoints["sd"], name="too-small")
    assert "text 32 wide" in str(e.value) and "768" in str(e.value) and "--config DIR" in str(e.value)
    assert manager.records.get("too-small") is None


def test_bad_files_and_options_are_refused_clearly(
    manager: Any, model_folders: Any, checkpoints: Any, tmp_path: Path
) -> None:
    from invokeai_diffusers.models.manager import ModelInstallError

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelInstallError, match=r"garbage\.safetensors: not a readable safetensors file"):
        manager.add(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(checkpoints["sd"].read_bytes()[:4096])
    with pytest.raises(ModelInstallError, match="not a readable safetensors file"):
        manager.add(truncated)
    with pytest.raises(ModelInstallError, match="--config is for single-file checkpoints"):
        manager.add(model_folders["sd"], name="x", config=model_folders["sd"])
    with pytest.raises(ModelInstallError, match="not a diffusers config folder"):
        manager.add(checkpoints["sd"], name="x", config=tmp_path)
    assert manager.records.get("x") is None


def test_a_checkpoint_without_a_vae_fails_that_load_and_caches_nothing_for_it(
    manager: Any, model_folders: Any, checkpoints: Any, tmp_path: Path
) -> None:
    from invokeai_diffusers.models.cache import ModelLoadError
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(checkpoints["sd"])).items() if not k.startswith("first_stage_model.")}
    no_vae = tmp_path / "no-vae.safetensors"
    save_file(state, str(no_vae))
    manager.add(no_vae, name="no-vae", config=model_folders["sd"])
    with pytest.raises(ModelLoadError, match=r"no-vae.*holds no vae weights"):
        manager.load("no-vae", "vae")
    assert manager.load("no-vae", "unet") is not None
    assert [sub for name, sub, _ in manager.cache.cached() if name == "no-vae"] == ["unet"]


def test_the_wheel_ships_the_configs_and_the_vocabulary(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    plugin = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(plugin),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("invokeai_diffusers-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = "invokeai_diffusers/models/configs/"
    for rel in (
        "bpe_simple_vocab_16e6.txt.gz",
        "LICENSE-open_clip",
        "sd-1/unet/config.json",
        "sd-2/text_encoder/config.json",
        "sdxl/tokenizer_2/tokenizer_config.json",
    ):
        assert configs + rel in names


def test_an_inpainting_checkpoint_is_probed_as_such_and_needs_a_nine_channel_config(
    manager: Any, model_folders: Any, checkpoints: Any, tmp_path: Path
) -> None:
    import torch
    from invokeai_diffusers.models.manager import ModelInstallError
    from invokeai_diffusers.models.probe import probe
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoints["sd"]))
    conv_in = state["model.diffusion_model.input_blocks.0.0.weight"]
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.cat([conv_in, conv_in, conv_in[:, :1]], dim=1)
    inpaint = tmp_path / "tiny-inpaint.safetensors"
    save_file(state, str(inpaint))
    found = probe(inpaint)
    assert (found.base, found.variant, found.in_channels, found.cross_attention_dim) == ("sd-1", "inpaint", 9, 32)
    with pytest.raises(ModelInstallError, match=r"takes 9 input channels.*has 4"):
        manager.add(inpaint, config=model_folders["sd"])
