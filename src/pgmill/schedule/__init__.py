"""Schedules: cron and intervals turned into expected runs (rows in pgmill.expected_runs), and the service
loop behind `pgmill serve` that claims and runs them."""
