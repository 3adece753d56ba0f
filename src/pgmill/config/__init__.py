"""Project file and contract models, loading with clear errors, JSON Schema."""
