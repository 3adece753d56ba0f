"""The source-kind registry: every kind the project file accepts has a reader, and only those."""

from __future__ import annotations

from pgmill.config.spec import SOURCE_SPECS
from pgmill.ingest.sources import SOURCES


def test_every_kind_of_the_config_union_has_a_reader() -> None:
    assert set(SOURCES) == set(SOURCE_SPECS)
    for kind, entry in SOURCES.items():
        assert entry.spec is SOURCE_SPECS[kind]
        assert callable(entry.opener()), kind
