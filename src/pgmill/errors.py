"""pgmill's exceptions: one base, a small tree, every message written for the person who reads it.

    PgmillError
    ├── ConfigError            project file or contract is invalid (names file, line, field)
    ├── ContractError          a row broke a rule whose policy is `fail`, or the source does not fit
    ├── SourceError            a source cannot be read (permanent: missing file, bad credentials)
    │   └── PgoutputError      (ingest.cdc.pgoutput) a pgoutput message cannot be decoded
    ├── TransientError         worth retrying (network, HTTP 429/5xx, lost connection, deadlock)
    ├── DatabaseError          Postgres refused something pgmill cannot work around
    │   └── DatabaseUnavailable  no server answered at the configured address
    ├── PipelineLocked         another run of the same pipeline holds the lock
    ├── AccountingError        rows read != loaded + quarantined + duplicate: the run is failed
    ├── QualityCheckFailed     (quality.results) an error-severity table check failed
    ├── QueryRefused           (mcp.sqlcheck) the read-only guard will not send this statement
    ├── NotReadOnly            (mcp.readonly) read-only access cannot be guaranteed for this user
    ├── QueryFailed            (mcp.readonly) Postgres refused or cancelled a read-only statement
    └── NoSuchTable            (mcp.catalog) the table does not exist or is not visible

Lower-layer errors (psycopg, httpx, pyarrow) are mapped to these at the boundary that sees them.
"""

from __future__ import annotations


class PgmillError(Exception):
    """Base class of every error pgmill raises on purpose."""

    #: process exit code used by the CLI
    exit_code = 1


class ConfigError(PgmillError):
    """The project file or a contract is invalid."""

    exit_code = 2


class ContractError(PgmillError):
    """A row broke a rule whose policy is `fail`, or the source's shape does not fit the contract."""

    exit_code = 3


class SourceError(PgmillError):
    """A source cannot be read, and retrying will not help."""

    exit_code = 4


class TransientError(PgmillError):
    """A failure that is worth retrying: the next attempt may succeed."""

    exit_code = 5


class DatabaseError(PgmillError):
    """Postgres refused something pgmill cannot work around."""

    exit_code = 6


class DatabaseUnavailable(DatabaseError):
    """No server answered at the configured address."""


class PipelineLocked(PgmillError):
    """Another run of the same pipeline is in progress."""

    exit_code = 7


class AccountingError(PgmillError):
    """The run's row counts do not add up; the run is marked failed."""

    exit_code = 8
