"""Sources, validation, checkpointed loading, state and quarantine."""
