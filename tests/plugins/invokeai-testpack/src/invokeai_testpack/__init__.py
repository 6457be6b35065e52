"""A tiny node pack installed by the kernel's tests (see tests/test_plugins.py)."""
