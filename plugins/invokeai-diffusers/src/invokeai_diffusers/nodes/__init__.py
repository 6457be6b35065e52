"""The diffusion nodes (imported only inside the `register_invocations` hook)."""
