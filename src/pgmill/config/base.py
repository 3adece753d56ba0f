"""What every model of pgmill's files shares: strictness, and the rule for a plain SQL identifier."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

#: Postgres cuts longer identifiers to this many bytes (NAMEDATALEN - 1), so two long names could become one
MAX_IDENT_LENGTH = 63
#: A plain SQL identifier, as a regular-expression fragment (for patterns that embed one): a letter or _,
#: then letters, digits, _ or $; such a name needs no quotes, and quoting keeps it as written.
IDENT = rf"[A-Za-z_][A-Za-z0-9_$]{{0,{MAX_IDENT_LENGTH - 1}}}"
_IDENT = re.compile(IDENT)


def is_identifier(name: str, *, dollar: bool = True) -> bool:
    """`name` is a plain SQL identifier (see IDENT); with `dollar=False`, one without `$` as well."""
    return _IDENT.fullmatch(name) is not None and (dollar or "$" not in name)


class StrictModel(BaseModel):
    """A section of pgmill.yaml or a contract: an unknown field is an error (a typo must not pass silently).
    A field with an alias (`schema_`, written `schema`) may be given by either name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
