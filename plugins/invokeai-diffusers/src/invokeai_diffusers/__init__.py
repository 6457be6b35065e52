"""invokeai-diffusers: models, a model cache and Stable Diffusion nodes for invokeai-core."""

__version__ = "0.1.0"
