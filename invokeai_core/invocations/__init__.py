"""The plugin-author API: invocations, outputs, fields and the decorators that validate them."""
