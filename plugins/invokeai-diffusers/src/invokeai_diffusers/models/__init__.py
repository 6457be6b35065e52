"""Model records, probing, loading, caching and the model manager service."""
