"""Embedded server lifecycle, connections, migrations, DDL: the only place that opens connections."""
