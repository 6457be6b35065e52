"""Service ABCs, the kernel's default implementations, and the container that builds them."""
