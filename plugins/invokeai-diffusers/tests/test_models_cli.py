"""`invokeai models ...` and the start-up cost of the plugin, through the real executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

INVOKEAI = str(Path(sys.executable).parent / "invokeai")


def cli(*args: str, root: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1")
    return subprocess.run([INVOKEAI, *args], capture_output=True, text=True, env=env, input=input, timeout=300)


def test_create_demo_then_generate_from_the_cli(tmp_path: Path) -> None:
    made = cli("models", "create-demo", root=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "images are noise" in made.stdout and "torchvision" not in made.stderr
    again = cli("models", "create-demo", root=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("demo-sd (sd-1) is already installed at ")
    listed = json.loads(cli("models", "list", "--json", root=tmp_path).stdout)
    assert [(m["name"], m["base"], m["format"]) for m in listed] == [("demo-sd", "sd-1", "diffusers")]
    assert listed[0]["hash"].startswith("blake2b:") and listed[0]["size"] > 1_000_000
    shown = cli("models", "show", "demo-sd", root=tmp_path)
    assert shown.returncode == 0 and "sd-1" in shown.stdout
    rows = [line.split(maxsplit=1) for line in shown.stdout.splitlines()]
    assert dict(rows)["prediction_type"] == "-" and "None" not in shown.stdout
    assert len({line.index(value) for line, (_, value) in zip(shown.stdout.splitlines(), rows, strict=True)}) == 1
    graph = {
        "nodes": {
            "t": {
                "id": "t",
                "type": "txt2img",
                "model": "demo-sd",
                "prompt": "hi",
                "width": 64,
                "height": 64,
                "steps": 2,
            }
        },
        "edges": [],
    }
    run = cli("run", "-f", "-", "--json", root=tmp_path, input=json.dumps(graph))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == "completed" and out["results"]["t"]["width"] == 64
    assert "torchvision" not in run.stderr  # transformers' harmless fallback warning is silenced


def test_an_unknown_model_is_bad_input_and_nothing_runs(tmp_path: Path) -> None:
    assert cli("models", "create-demo", root=tmp_path).returncode == 0
    hint = "unknown model 'demo-s' (did you mean 'demo-sd'? installed: demo-sd)"
    res = cli("run", "txt2img --model demo-s --steps 1", root=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(f"invokeai: error: txt2img: node '1', field 'model': {hint}")
    assert len(res.stderr.splitlines()) == 1
    graph = {"nodes": {"m": {"id": "m", "type": "sdxl_model_loader", "model": "demo-sd"}}, "edges": []}
    res = cli("run", "-f", "-", root=tmp_path, input=json.dumps(graph))
    assert res.returncode == 2 and "field 'model': 'demo-sd' is a sd-1 model: use main_model_loader" in res.stderr
    batch = {"graph": {"nodes": {"t": {"id": "t", "type": "txt2img", "model": "demo-sd"}}, "edges": []}}
    batch["data"] = [[{"node_path": "t", "field_name": "model", "items": ["demo-sd", "ghost"]}]]
    res = cli("queue", "enqueue", "-", root=tmp_path, input=json.dumps(batch))
    assert res.returncode == 2 and "batch: node 't', field 'model': unknown model 'ghost'" in res.stderr
    shell = cli("run", root=tmp_path, input="txt2img --model nosuch\n")
    assert shell.returncode == 2 and "unknown model 'nosuch'" in shell.stderr
    assert json.loads(cli("queue", "list", "--json", root=tmp_path).stdout) == []
    assert not (tmp_path / "outputs" / "images").exists() or not any((tmp_path / "outputs" / "images").iterdir())


def test_add_show_remove_and_refusals(tmp_path: Path, model_folders: Any) -> None:
    added = cli("models", "add", str(model_folders["sdxl"]), "--name", "xl", root=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "installed xl (sdxl" in added.stdout
    again = cli("models", "add", str(model_folders["sdxl"]), "--name", "xl", root=tmp_path)
    assert again.returncode == 2 and "already installed" in again.stderr
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    refused = cli("models", "add", str(pickle), root=tmp_path)
    assert refused.returncode == 2 and "pickle" in refused.stderr and "allow_pickle" in refused.stderr
    missing = cli("models", "add", str(tmp_path / "nowhere"), root=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert "model_index.json" in cli("models", "add", str(not_a_model), root=tmp_path).stderr
    unknown = cli("models", "show", "ghost", root=tmp_path)
    assert unknown.returncode == 2 and "unknown model 'ghost'" in unknown.stderr
    removed = cli("models", "remove", "xl", root=tmp_path)
    assert removed.returncode == 0 and json.loads(cli("models", "list", "--json", root=tmp_path).stdout) == []
    assert model_folders["sdxl"].exists()  # removing the record never deletes a model it did not create


def test_a_graph_of_plain_nodes_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from invokeai_core.cli.main import main\n"
        "sys.argv = ['invokeai', 'run', '-f', '-', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + json.dumps(heavy))\n"
    )
    graph = {"nodes": {"a": {"id": "a", "type": "add", "a": 1, "b": 2}}, "edges": []}
    env = {"INVOKEAI_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
    res = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(graph), capture_output=True, text=True, env=env, timeout=120
    )
    assert json.loads(res.stdout)["results"]["a"]["value"] == 3
    assert res.stderr.strip().endswith("HEAVY=[]"), res.stderr


def test_a_single_file_checkpoint_installs_and_generates_from_the_cli(tmp_path: Path, model_folders: Any) -> None:
    from ldm_layout import folder_to_checkpoint

    ckpt = folder_to_checkpoint(model_folders["sd"], tmp_path / "tiny.safetensors", base="sd-1")
    refused = cli("models", "add", str(ckpt), root=tmp_path)
    assert refused.returncode == 2 and "--config DIR" in refused.stderr
    bad_choice = cli("models", "add", str(ckpt), "--prediction-type", "x0", root=tmp_path)
    assert bad_choice.returncode == 2 and "--prediction-type" in bad_choice.stderr
    args = ["--name", "tiny-file", "--config", str(model_folders["sd"]), "--prediction-type", "epsilon"]
    added = cli("models", "add", str(ckpt), *args, root=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "installed tiny-file (sd-1, normal, checkpoint)" in added.stdout
    shown = json.loads(cli("models", "show", "tiny-file", "--json", root=tmp_path).stdout)
    assert shown["config"] == str(model_folders["sd"]) and shown["prediction_type"] == "epsilon"
    assert shown["size"] == ckpt.stat().st_size
    node = {"id": "t", "type": "txt2img", "model": "tiny-file", "prompt": "hi", "width": 64, "height": 64, "steps": 2}
    run = cli("run", "-f", "-", "--json", root=tmp_path, input=json.dumps({"nodes": {"t": node}, "edges": []}))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "completed"


def test_from_image_reruns_the_graph_stored_in_an_output(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    assert cli("models", "create-demo", root=tmp_path).returncode == 0
    graph = {
        "nodes": {
            "t": {
                "id": "t",
                "type": "txt2img",
                "model": "demo-sd",
                "prompt": "hi",
                "width": 64,
                "height": 64,
                "steps": 2,
                "seed": 5,
                "scheduler": "euler_a",
            }
        },
        "edges": [],
    }
    first = json.loads(cli("run", "-f", "-", "--json", root=tmp_path, input=json.dumps(graph)).stdout)
    png = tmp_path / "outputs" / "images" / first["results"]["t"]["image"]["image_name"]
    again = cli("run", "--from-image", str(png), "--json", root=tmp_path)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    png2 = tmp_path / "outputs" / "images" / second["results"]["t"]["image"]["image_name"]
    assert png2 != png
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(png2)))
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    refused = cli("run", "--from-image", str(plain), root=tmp_path)
    assert refused.returncode == 2 and "carries no graph" in refused.stderr


def test_every_model_input_says_which_installed_models_fit() -> None:
    """The web UI's model pickers offer only the models an input's `ui_model_type`/`ui_model_base`
    hints name: every model-name input of the plugin's nodes carries them, with the record types and
    bases the model manager and the probe really use (a typo would leave a picker empty)."""
    from invokeai_diffusers import hooks
    from invokeai_diffusers.models.manager import KIND_NAMES

    bases = {"sd-1", "sd-2", "sdxl", "flux", "sd-3"}
    classes: list[Any] = []
    hooks.register_invocations(classes.append)
    hinted: dict[str, dict[str, Any]] = {}
    for cls in classes:
        for name, prop in cls.model_json_schema()["properties"].items():
            if prop.get("ui_type") != "model":
                continue
            assert "ui_model_type" in prop, f"{cls.__name__}.{name} names a model but says not of which type"
            types = prop["ui_model_type"] if isinstance(prop["ui_model_type"], list) else [prop["ui_model_type"]]
            assert set(types) <= set(KIND_NAMES), (cls.__name__, name, types)
            base = prop.get("ui_model_base", [])
            assert set(base if isinstance(base, list) else [base]) <= bases, (cls.__name__, name, base)
            hinted[f"{cls.invocation_type}.{name}"] = {"type": types, "base": base}
    assert hinted["controlnet.control_model"] == {"type": ["controlnet"], "base": []}
    assert hinted["t2i_adapter.t2i_adapter_model"] == {"type": ["t2i_adapter"], "base": []}
    assert hinted["lora_loader.lora"] == {"type": ["lora"], "base": []}
    assert hinted["sdxl_model_loader.model"] == {"type": ["main"], "base": "sdxl"}
    assert {key.split(".")[0] for key in hinted} >= {"ip_adapter", "upscale_image", "txt2img", "flux_model_loader"}
