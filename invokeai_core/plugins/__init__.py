"""Plugin discovery and loading (pluggy + entry points)."""
