"""Generation speed on a CUDA GPU against raw diffusers: an SD-1.5-sized UNet (random weights with the
real SD 1.5 component configs, built offline) at 512x512, 20 steps, fp16, warm.

Our granular graph and our `txt2img` node are timed against a raw `StableDiffusionPipeline` call in
the same process, alternating; the ratios of the medians are printed (target <= 1.03), with the model
loads of the timed runs (target 0) and the peak GPU memory. Without CUDA it says so and exits with
status 2 (bench/diffusion.py has the CPU rows).

    .venv/bin/python bench/gpu.py [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = 1.03


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device is visible to torch; run bench/diffusion.py for the CPU rows")
        return 2
    from diffusion import print_ratios, sd_rows, started_invoker

    with tempfile.TemporaryDirectory() as root:
        invoker, manager, host = started_invoker(Path(root))
        try:
            times, loads = sd_rows(invoker, manager, host, Path(root), args.runs, gpu=True)
            dtype = manager.cache.dtype
        finally:
            invoker.stop()
    print(f"device: {torch.cuda.get_device_name(0)}; 512x512, 20 steps, {dtype}; {args.runs} alternating runs each")
    print_ratios(times, "raw pipeline", 16, f"   (target <= {TARGET})")
    print(f"model loads during timed runs: {loads} (target 0)")
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
