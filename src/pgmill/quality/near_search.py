"""Which distinct normalized values are alike: the pairs behind the near-duplicate rule.

Two searches over the temporary table of distinct values (id, norm) that duplicates.py builds:

- `exact`: every pair the rule's measure accepts. Trigram: a self-join on pg_trgm's `%` over a GiST index;
  when most values share common trigrams (sentences from a small vocabulary) the index filters almost
  nothing and the cost grows with the square of the values.
- `blocked`: only values that share a blocking key are compared, then each candidate pair is verified in
  Postgres with the rule's own measure (`%` for trigram, levenshtein_less_equal for levenshtein), so every
  pair it reports is one the exact search reports too. Keys, computed on the client from the normalized
  value with its words sorted (word order never separates two values):
    * for each word, the other words plus that word with one character deleted (or intact): values
      differing by one edit (typo, missing or extra letter, swapped neighbours) in one word meet;
    * values of 1-3 words: also the whole value with an empty word (a one-letter word more or less);
    * values of 4+ words: the other words without that word (any change confined to one word);
    * values of 6+ words: the words without any two of them (changes confined to two words).
  Pairs the exact search finds that no key joins (two typos in one short name, a split word) are missed:
  bench/RESULTS_neardup.md measures how many against the exact search.

A `Budget` bounds the wall-clock time: statements run with a statement_timeout of what is left, and the
client loop looks at the clock, so a search that cannot finish in time stops with `OverBudget`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

#: similar pairs read back at most; a column where more values than this are alike is not a name column
MAX_PAIRS = 200_000
#: a blocking key shared by more values than this is too common to say anything: its values are not paired
#: through it (counted in the result's detail as `common_keys`)
MAX_BLOCK = 200
#: `search: auto` first tries the exact search on up to this many distinct values, for at most
#: AUTO_EXACT_SECONDS; when it cannot finish (sentences from a small vocabulary: 5,000 take ~50 s) it blocks
AUTO_EXACT_LIMIT = 10_000
AUTO_EXACT_SECONDS = 5.0
VALS = sql.Identifier("pgmill_near_dup_values")
_PAIRS_TABLE = sql.Identifier("pgmill_near_dup_candidates")


class OverBudget(Exception):
    """The search needs more than the rule's max_seconds."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase
        self.values: int | None = None  # distinct values to compare, once known


@dataclass
class Budget:
    """A deadline for one rule; `limit` None is no limit."""

    limit: float | None
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def part(self, seconds: float) -> Budget:
        """A budget of at most `seconds` within this one."""
        left = None if self.limit is None else self.limit - self.elapsed
        return Budget(seconds if left is None else min(seconds, left))

    def check(self, phase: str) -> None:
        if self.limit is not None and self.elapsed >= self.limit:
            raise OverBudget(phase)

    def run(self, conn: psycopg.Connection[Any], phase: str, query: sql.Composed,
            params: Any = None) -> list[tuple[Any, ...]]:
        """Run `query` with a statement_timeout of the time left; a cancelled statement is OverBudget."""
        self.check(phase)
        if self.limit is not None:
            left_ms = max(1, int((self.limit - self.elapsed) * 1000))
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(left_ms),))
        try:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.errors.QueryCanceled as exc:
            raise OverBudget(phase) from exc
        finally:
            if self.limit is not None and not conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.execute("SELECT set_config('statement_timeout', '0', true)")


@dataclass
class Measure:
    """The rule's measure: pg_trgm similarity >= `similarity`, or levenshtein distance <= `distance`."""

    trigram: str | None  # schema of pg_trgm
    fuzzy: str | None  # schema of fuzzystrmatch
    similarity: float
    distance: int

    def accepts(self, a: str, b: str) -> sql.Composable | None:
        """The SQL condition that values `a` and `b` (qualified column names) are alike; None when only equal
        normalized values group (neither extension)."""
        if self.trigram:
            return sql.SQL("{a} OPERATOR({s}.%) {b}").format(
                a=sql.SQL(a), b=sql.SQL(b), s=sql.Identifier(self.trigram))
        if self.fuzzy:
            return sql.SQL(
                "abs(length({a}) - length({b})) <= {d} AND length({a}) <= 255 AND length({b}) <= 255"
                " AND {s}.levenshtein_less_equal({a}, {b}, {d}) <= {d}"  # levenshtein's own 255 limit
            ).format(a=sql.SQL(a), b=sql.SQL(b), d=sql.Literal(self.distance), s=sql.Identifier(self.fuzzy))
        return None

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        if self.trigram:
            conn.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", (str(self.similarity),))


def exact_pairs(conn: psycopg.Connection[Any], measure: Measure, budget: Budget) -> list[tuple[int, int]]:
    """Every pair the measure accepts (levenshtein: within blocks of the same first letter, as before)."""
    cond = measure.accepts("a.norm", "b.norm")
    if cond is None:
        return []
    if measure.trigram:
        budget.run(conn, "indexing values", sql.SQL("CREATE INDEX ON {} USING gist (norm {}.gist_trgm_ops)").format(
            VALS, sql.Identifier(measure.trigram)))
        join = sql.SQL("a.norm OPERATOR({}.%) b.norm").format(sql.Identifier(measure.trigram))
    else:
        join = sql.SQL("left(a.norm, 1) = left(b.norm, 1) AND {}").format(cond)
    rows = budget.run(conn, "comparing values", sql.SQL(
        "SELECT a.id, b.id FROM {v} a JOIN {v} b ON {join} AND a.id < b.id LIMIT {lim}"
    ).format(v=VALS, join=join, lim=sql.Literal(MAX_PAIRS + 1)))
    return [(int(a), int(b)) for a, b in rows]


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it mixes the bits of a sum of word hashes
_SALT_REST = np.uint64(0x51ED270B27D4A3C1)  # marks the keys that are a value's remaining words


def _deletions(word: str) -> list[str]:
    """The word and every string one character shorter: two words one edit apart share one of these."""
    return [word] + [word[:j] + word[j + 1:] for j in range(len(word))]


def blocking_keys(values: list[str]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(key hashes, value index) of every blocking key of `values` (normalized: lower case, single spaces).

    A value is its multiset of words, hashed as the sum of its words' 64-bit hashes, so word order
    never matters and "the other words" of a word is the sum minus that word's hash. Keys: values of 1-3
    words, for each word, the other words with each one-character deletion of that word (or the word
    intact), and the value with an empty word (a one-letter word more or less); 4+ words, the value less
    one word; 6+ words, also the value less any two words.
    """
    vocab: dict[str, int] = {}
    word_ids: list[int] = []
    lengths: list[int] = []
    for v in values:
        ws = v.split(" ")
        lengths.append(len(ws))
        word_ids += [vocab.setdefault(w, len(vocab)) for w in ws]
    word_hash = np.asarray([hash(w) for w in vocab], dtype=np.int64).astype(np.uint64)  # a word's own hash
    tok_word = np.asarray(word_ids, dtype=np.int64)
    m = np.asarray(lengths, dtype=np.int64)
    tok_value = np.repeat(np.arange(len(values)), m)
    starts = np.cumsum(m) - m
    tok_hash = word_hash[tok_word]
    total = np.add.reduceat(tok_hash, starts) if len(tok_hash) else np.zeros(0, dtype=np.uint64)
    others = total[tok_value] - tok_hash
    keys: list[np.ndarray[Any, Any]] = []
    owners: list[np.ndarray[Any, Any]] = []
    # short values: one edit in one word
    short = m[tok_value] <= 3
    words = list(vocab)
    used = np.unique(tok_word[short])
    var_lists = [[hash(d) for d in _deletions(words[w])] for w in used.tolist()]
    var_count = np.zeros(len(vocab), dtype=np.int64)
    var_count[used] = [len(x) for x in var_lists]
    var_start = np.zeros(len(vocab), dtype=np.int64)
    var_start[used] = np.cumsum(var_count[used]) - var_count[used]
    var_hash = np.asarray([h for x in var_lists for h in x], dtype=np.int64).astype(np.uint64)
    toks = np.flatnonzero(short)
    counts = var_count[tok_word[toks]]
    rep = np.repeat(toks, counts)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    keys.append(others[rep] * _MIX + var_hash[var_start[tok_word[rep]] + offset])
    owners.append(tok_value[rep])
    # ... and the whole value with an empty word: it meets a value with one more word of one letter
    vals = np.flatnonzero(m <= 3)
    keys.append(total[vals] * _MIX + np.asarray(hash(""), dtype=np.int64).astype(np.uint64))
    owners.append(vals)
    # 4+ words: the value less one word
    toks = np.flatnonzero(~short)
    keys.append(others[toks] + _SALT_REST)
    owners.append(tok_value[toks])
    # 6+ words: the value less two words, vectorized per word count
    for size in np.unique(m[m >= 6]).tolist():
        vals = np.flatnonzero(m == size)
        hashes = tok_hash[starts[vals][:, None] + np.arange(size)]
        i, j = np.triu_indices(size, 1)
        keys.append((total[vals][:, None] - hashes[:, i] - hashes[:, j] + _SALT_REST).ravel())
        owners.append(np.repeat(vals, len(i)))
    return np.concatenate(keys).view(np.int64), np.concatenate(owners)


@dataclass
class Blocked:
    pairs: list[tuple[int, int]]
    candidates: int  # pairs compared in Postgres
    common_keys: int  # keys shared by more than MAX_BLOCK values, not used


def blocked_pairs(conn: psycopg.Connection[Any], measure: Measure, budget: Budget) -> Blocked:
    """Pairs of values that share a blocking key and that the measure accepts."""
    # ids are 1..n (row_number), and a value holds no newline (whitespace is collapsed to single spaces):
    # one text of every value, a line each, reads far faster than a row per value
    [(data,)] = budget.run(conn, "reading values", sql.SQL(
        "SELECT coalesce(string_agg(norm, E'\\n' ORDER BY id), '') FROM {}").format(VALS))
    values = str(data).split("\n") if data else []
    del data
    budget.check("computing blocking keys")
    h, owner = blocking_keys(values)
    del values
    budget.check("grouping blocking keys")
    order = np.argsort(h)
    h = h[order]
    vid_sorted = owner[order] + 1
    del order, owner
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    sizes = np.diff(np.r_[starts, len(h)])
    common = int((sizes > MAX_BLOCK).sum())
    budget.check("pairing values")
    pair_codes: list[np.ndarray[Any, Any]] = []
    for size in np.unique(sizes[(sizes > 1) & (sizes <= MAX_BLOCK)]):
        size = int(size)
        block_starts = starts[sizes == size]
        members = vid_sorted[block_starts[:, None] + np.arange(size)]  # one row per block
        left, right = np.triu_indices(size, 1)
        a, b = members[:, left].ravel(), members[:, right].ravel()
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo < hi  # a value can hold one key twice (a repeated word)
        pair_codes.append((lo[keep] << 32) | hi[keep])
    codes = np.unique(np.concatenate(pair_codes)) if pair_codes else np.empty(0, dtype=np.int64)
    budget.check("verifying pairs")
    cond = measure.accepts("a.norm", "b.norm")
    if cond is None or not len(codes):
        return Blocked([], len(codes), common)
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (a bigint, b bigint)").format(_PAIRS_TABLE))
    with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(_PAIRS_TABLE)) as cp:
        lo, hi = codes >> 32, codes & 0xFFFFFFFF
        cp.write("".join(f"{x}\t{y}\n" for x, y in zip(lo.tolist(), hi.tolist(), strict=True)))
    conn.execute(sql.SQL("ANALYZE {}, {}").format(_PAIRS_TABLE, VALS))  # else a nested loop over all values
    rows = budget.run(conn, "verifying pairs", sql.SQL(
        "SELECT p.a, p.b FROM {p} p JOIN {v} a ON a.id = p.a JOIN {v} b ON b.id = p.b WHERE {cond} LIMIT {lim}"
    ).format(p=_PAIRS_TABLE, v=VALS, cond=cond, lim=sql.Literal(MAX_PAIRS + 1)))
    return Blocked([(int(a), int(b)) for a, b in rows], len(codes), common)
