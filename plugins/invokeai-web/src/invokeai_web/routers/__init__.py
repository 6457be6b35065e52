"""One module per area of the API; each defines `router` (mounted under `/api/v1`)."""
