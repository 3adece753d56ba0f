"""The run ledger (and, later, metrics, alerts and cost)."""
