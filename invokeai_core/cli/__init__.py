"""The `invokeai` command line (click)."""
