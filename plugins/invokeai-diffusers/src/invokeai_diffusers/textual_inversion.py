"""Textual inversion embeddings, applied by trigger word the way diffusers' `load_textual_inversion` does.

An embedding is an installed model of type `embedding` (one .safetensors file, or a pickle `.pt` /
`.bin` when pickles are allowed) in any layout `load_textual_inversion` reads: diffusers'
`{"<token>": tensor}`, A1111's `emb_params` (safetensors) or `string_to_param["*"]` (.pt), and SDXL's
`clip_l` + `clip_g` (one tensor per text encoder). A prompt uses it by writing the model's name in
angle brackets, `a photo of <my-style>`. Its vectors are read once into the model cache.

For one encode, `injected` calls diffusers' own `load_textual_inversion` on a *copy* of the cached
tokenizer and on the cached text encoder (whose token embedding it resizes), so the prompt is
tokenized (multi-vector triggers expanded by `maybe_convert_prompt`) and embedded exactly as a
pipeline with the embedding loaded does. Afterwards the text encoder gets its original embedding
module, weight tensor and vocabulary size back (the very same tensor, so `torch.equal` holds by
construction) and
the copied tokenizer is dropped: the cached components are never left changed. All of it happens
under the modules lock, like LoRAs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invokeai_core import InvokeAIError

#: `<name>` in a prompt, where name is an installed model's name (see manager.NAME)
TRIGGER = re.compile(r"<([A-Za-z0-9][A-Za-z0-9._-]*)>")

#: pipeline attribute of each text encoder -> the attribute of its tokenizer
TOKENIZER_OF = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


class EmbeddingError(InvokeAIError):
    """An embedding cannot be read or applied (the message says why)."""


def trigger_names(*texts: str) -> list[str]:
    """The names written as `<name>` in the texts, each once, in order of appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in TRIGGER.finditer(text or ""):
            seen.setdefault(match.group(1), None)
    return list(seen)


def embedding_base(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The base of an embedding file by its tensor names and shapes (None: not an embedding).

    SDXL embeddings hold `clip_l` and `clip_g`; the others hold one tensor (`emb_params` or the token
    itself) of one vector or a few rows, 1024 wide for SD 2.x (768 for SD 1.x; other widths, like the
    test models', count as SD 1.x and are checked against the text encoder when applied)."""
    if set(shapes) == {"clip_l", "clip_g"} and all(len(s) == 2 for s in shapes.values()):
        return "sdxl"
    if len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if len(shape) == 1 or (len(shape) == 2 and 0 < shape[0] <= 75):
        return "sd-2" if shape[-1] == 1024 else "sd-1"
    return None


def read_embedding(path: Path, *, allow_pickle: bool) -> dict[str, Any]:
    """The vectors of an embedding file per text encoder: `{"text_encoder": tensor}` (SD 1.x/2.x) or
    `{"text_encoder": clip_l, "text_encoder_2": clip_g}` (SDXL); each tensor (n, width) or (width,)."""
    from invokeai_diffusers.models.single_file import PICKLE_SUFFIXES

    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise EmbeddingError(
                f"{path}: '{path.suffix}' files are Python pickles, which can run arbitrary code when loaded; "
                "convert it to .safetensors, or set plugins.diffusers.allow_pickle = true if you trust its source"
            )
        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise EmbeddingError(f"{path}: not a readable embedding ({type(e).__name__}: {e})") from None
    else:
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception as e:
            raise EmbeddingError(f"{path}: not a readable safetensors file ({e})") from None
    return vectors(data, path)


def vectors(data: Any, path: Path) -> dict[str, Any]:
    """What `load_textual_inversion` takes from each layout (`_retrieve_tokens_and_embeddings`)."""
    import torch

    if not isinstance(data, dict):
        raise EmbeddingError(f"{path}: holds a {type(data).__name__}, not an embedding")
    if "clip_l" in data and "clip_g" in data:
        found = {"text_encoder": data["clip_l"], "text_encoder_2": data["clip_g"]}
    elif "string_to_param" in data and isinstance(data["string_to_param"], dict):  # A1111 .pt
        params = data["string_to_param"]
        if "*" not in params:
            raise EmbeddingError(f"{path}: an A1111 embedding without string_to_param['*']")
        found = {"text_encoder": params["*"]}
    elif len(data) == 1:  # diffusers' {token: tensor}, or A1111's safetensors {"emb_params": tensor}
        found = {"text_encoder": next(iter(data.values()))}
    else:
        raise EmbeddingError(f"{path}: not a textual inversion embedding (keys: {', '.join(sorted(map(str, data)))})")
    for tensor in found.values():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or tensor.shape[-1] == 0:
            raise EmbeddingError(f"{path}: the embedding is not a vector or a few rows of vectors")
    return {k: v.detach().to("cpu") for k, v in found.items()}


def check_fits(name: str, base: str, model_base: str, loaded: dict[str, Any], widths: dict[str, int]) -> None:
    """An embedding for SDXL needs an SDXL model and the reverse; its width must be the encoder's."""
    if (base == "sdxl") != (model_base == "sdxl"):
        raise EmbeddingError(f"embedding '{name}' is for {base}, the model is {model_base}")
    for component, width in widths.items():
        tensor = loaded.get(component)
        if tensor is not None and int(tensor.shape[-1]) != width:
            raise EmbeddingError(
                f"embedding '{name}' is {int(tensor.shape[-1])} wide, the {component} takes {width} "
                "(an embedding made for another base)"
            )


@contextmanager
def injected(pipe: Any, embeddings: list[tuple[str, dict[str, Any]]]) -> Iterator[None]:
    """Load `(name, vectors)` embeddings into `pipe`'s text encoders for the block, as token `<name>`.

    `pipe.tokenizer` (and `tokenizer_2`) are replaced by copies that get the new tokens; the text
    encoders' embedding modules are swapped back afterwards, exactly as they were."""
    if not embeddings:
        yield
        return
    import copy

    import torch

    from invokeai_diffusers.lora import MODULES_LOCK

    with MODULES_LOCK:
        saved: list[tuple[Any, Any, Any, int, int, bool, Any]] = []
        originals: dict[str, Any] = {}
        try:
            with torch.inference_mode(False), torch.no_grad():
                for component, tokenizer_attr in TOKENIZER_OF.items():
                    text_encoder = getattr(pipe, component, None)
                    wanted = [(n, v[component]) for n, v in embeddings if component in v]
                    if text_encoder is None or not wanted:
                        continue
                    originals[tokenizer_attr] = getattr(pipe, tokenizer_attr)
                    tokenizer = copy.deepcopy(originals[tokenizer_attr])
                    setattr(pipe, tokenizer_attr, tokenizer)
                    # transformers resizes in place (the module keeps its identity, `weight.data` is
                    # replaced): the module, its tensor and its row count are all put back afterwards
                    module = text_encoder.get_input_embeddings()
                    saved.append(
                        (
                            text_encoder,
                            module,
                            module.weight.data,
                            module.num_embeddings,
                            text_encoder.config.get_text_config().vocab_size,
                            "vocab_size" in vars(text_encoder),
                            vars(text_encoder).get("vocab_size"),
                        )
                    )
                    for name, tensor in wanted:
                        try:
                            pipe.load_textual_inversion(
                                tensor, token=f"<{name}>", tokenizer=tokenizer, text_encoder=text_encoder
                            )
                        except ValueError as e:
                            raise EmbeddingError(f"embedding '{name}' does not fit the {component}: {e}") from None
            yield
        finally:
            for text_encoder, module, weight, rows, vocab_size, had_attr, attr in reversed(saved):
                module.weight.data = weight
                module.num_embeddings = rows
                text_encoder.set_input_embeddings(module)
                text_encoder.config.get_text_config().vocab_size = vocab_size
                if had_attr:
                    text_encoder.vocab_size = attr
                else:
                    vars(text_encoder).pop("vocab_size", None)
            for attr_name, tokenizer in originals.items():
                setattr(pipe, attr_name, tokenizer)
