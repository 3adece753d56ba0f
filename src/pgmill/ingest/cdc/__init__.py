"""Change data capture from PostgreSQL: the pgoutput protocol decoded (`pgoutput.py`); see docs/cdc.md."""
