"""Model SQL parsed once per content: the SELECT's text and the relations it reads, remembered in
`.pgmill/cache/model_sql.json` under the SHA-256 of the file's text.

Parsing needs the Postgres parser (pglast), whose import alone is ~50 ms of a command that may take well
under a second; an unchanged model needs neither. The file holds only what the latest discovery used, so
it does not grow; if it cannot be read or written, models are parsed as if it were not there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pgmill.transform.relation import Relation

PARSER_VERSION = "1"  # bump when deps.py changes what it finds: every cached entry is then parsed again
CACHE_FILE = Path(".pgmill") / "cache" / "model_sql.json"


class ParseCache:
    def __init__(self, project_dir: Path) -> None:
        self.path = project_dir / CACHE_FILE
        self._old: dict[str, Any] = {}
        self._used: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and doc.get("version") == PARSER_VERSION:
                self._old = dict(doc.get("entries") or {})

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def parse(self, text: str) -> tuple[str, list[Relation]]:
        """The SELECT without its trailing semicolon and comments, and the relations it reads (sorted);
        SqlError when it is not one SELECT."""
        key = self._key(text)
        hit = self._old.get(key)
        if isinstance(hit, dict) and isinstance(hit.get("body"), str) and isinstance(hit.get("refs"), list):
            self._used[key] = hit
            return hit["body"], [Relation(s, n) for s, n in hit["refs"]]
        from pgmill.transform.deps import parse_model

        body, refs = parse_model(text)
        self._used[key] = {"body": body, "refs": [[r.schema, r.name] for r in refs]}
        return body, refs

    def save(self) -> None:
        if self._used == self._old:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": PARSER_VERSION, "entries": self._used}), encoding="utf-8")
            tmp.replace(self.path)
