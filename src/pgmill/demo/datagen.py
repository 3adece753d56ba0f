"""Demo data: an online shop's exports, deterministic by seed, with an exact count of every defect.

Five tables (customers, products, orders, order_items, events) are drawn with numpy, formatted with polars
and written to CSV one chunk at a time, so memory is bounded by the chunk, never by the file. Every row that
is meant to load keeps its foreign keys: orders name loaded customers, items name loaded orders and
products, events name loaded customers.

Defects are injected at `defect_rate`, one kind per row, and counted exactly in the manifest, so a test can
assert that pgmill quarantines exactly those rows and counts exactly those duplicates. A duplicate is the
same key again right after the original (newer `updated_at` where the table has one). A demo file holds the
rows of `PART_ROWS` orders (customers, events...): about 60k order lines at most, less than one default
batch of 100k rows, so a duplicate always meets its original in the same batch and is counted as a
duplicate, not as an update.
"""

from __future__ import annotations

import binascii
import io
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import polars as pl

PART_ROWS = 25_000  # generated rows per demo file (before duplicates; orders' lines: ~2.4 per order)
BENCH_CHUNK_ROWS = 200_000

#: Every kind of defect the generator injects, in the order used to classify a quarantined row.
DEFECT_KINDS: tuple[str, ...] = (
    "null_required",  # a required value is empty
    "bad_enum",  # a value outside the accepted list
    "negative_amount",  # an amount (or quantity) below zero
    "bad_date",  # a date or timestamp that does not parse
    "bad_format",  # text that breaks its regex
    "rule_violation",  # breaks a row rule (discount above the total)
    "bad_json",  # a payload that is not JSON
    "duplicate_key",  # the same key again, newer: merged away, counted as a duplicate (not quarantined)
    "ragged_line",  # wrong number of fields
    "malformed_line",  # a line that is no record at all (no delimiter, no quote)
)
LINE_KINDS = ("ragged_line", "malformed_line")
_CODE = {k: i + 1 for i, k in enumerate(DEFECT_KINDS)}
_DUP = _CODE["duplicate_key"]

I64 = npt.NDArray[np.int64]
Codes = npt.NDArray[np.int8]


@dataclass(frozen=True)
class TableSpec:
    """One demo table: its columns, size at scale 1, and which defects it gets (and how pgmill names them)."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    base_rows: int  # rows at scale 1 (order_items: derived from orders)
    weights: dict[str, float]  # row defect kind -> share of the defect rate
    # (column, rule) of the quarantine violation that each injected kind produces; "" column: a row rule
    caught_by: dict[str, tuple[tuple[str, str], ...]]


TABLES: dict[str, TableSpec] = {
    "customers": TableSpec(
        "customers",
        ("customer_id", "email", "full_name", "country", "segment", "signup_date", "updated_at"),
        ("customer_id",), 5_000,
        {"null_required": 0.25, "bad_enum": 0.2, "bad_date": 0.15, "bad_format": 0.2, "duplicate_key": 0.2},
        {"null_required": (("email", "not_null"),), "bad_enum": (("segment", "accepted_values"),),
         "bad_date": (("signup_date", "type"),), "bad_format": (("email", "regex"),)},
    ),
    "products": TableSpec(
        "products",
        ("product_id", "sku", "name", "category", "price", "created_at", "updated_at"),
        ("product_id",), 500,
        {"null_required": 0.2, "bad_enum": 0.2, "negative_amount": 0.2, "bad_date": 0.1, "bad_format": 0.15,
         "duplicate_key": 0.15},
        {"null_required": (("name", "not_null"),), "bad_enum": (("category", "accepted_values"),),
         "negative_amount": (("price", "min"),), "bad_date": (("created_at", "type"),),
         "bad_format": (("sku", "regex"),)},
    ),
    "orders": TableSpec(
        "orders",
        ("order_id", "customer_id", "status", "total", "ordered_at", "updated_at", "channel", "currency",
         "discount", "coupon_code", "ship_country", "ship_address", "client_ip", "user_agent", "note"),
        ("order_id",), 40_000,
        {"null_required": 0.2, "bad_enum": 0.15, "negative_amount": 0.15, "bad_date": 0.15, "bad_format": 0.1,
         "rule_violation": 0.1, "duplicate_key": 0.15},
        {"null_required": (("customer_id", "not_null"), ("ordered_at", "not_null")),
         "bad_enum": (("status", "accepted_values"),), "negative_amount": (("total", "min"),),
         "bad_date": (("ordered_at", "type"),), "bad_format": (("currency", "regex"),),
         "rule_violation": (("", "discount_not_above_total"),)},
    ),
    "order_items": TableSpec(
        "order_items",
        ("order_id", "line_no", "product_id", "quantity", "unit_price"),
        ("order_id", "line_no"), 0,
        {"null_required": 0.35, "negative_amount": 0.35, "duplicate_key": 0.3},
        {"null_required": (("product_id", "not_null"),),
         "negative_amount": (("quantity", "min"), ("unit_price", "min"))},
    ),
    "events": TableSpec(
        "events",
        ("event_id", "user_id", "session_id", "event_type", "occurred_at", "payload"),
        ("event_id",), 60_000,
        {"null_required": 0.25, "bad_enum": 0.2, "bad_date": 0.2, "bad_json": 0.15, "duplicate_key": 0.2},
        {"null_required": (("user_id", "not_null"),), "bad_enum": (("event_type", "accepted_values"),),
         "bad_date": (("occurred_at", "type"),), "bad_json": (("payload", "type"),)},
    ),
}
for _spec in TABLES.values():
    _spec.caught_by.setdefault("ragged_line", (("", "parse"),))
    _spec.caught_by.setdefault("malformed_line", (("", "parse"),))


# ---------------------------------------------------------------- manifest


@dataclass
class TableManifest:
    """What was written for one table, and exactly which defects are in it."""

    table: str
    files: list[str] = field(default_factory=list)  # relative to the output folder
    rows: int = 0  # records written (data lines, header excluded), defective ones included
    bytes: int = 0
    defects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEFECT_KINDS, 0))

    @property
    def quarantined(self) -> int:
        """Records pgmill must quarantine: every defect but duplicates."""
        return sum(n for k, n in self.defects.items() if k != "duplicate_key")

    @property
    def duplicates(self) -> int:
        return self.defects["duplicate_key"]

    @property
    def loaded(self) -> int:
        """Distinct rows that must land in the table."""
        return self.rows - self.quarantined - self.duplicates

    def add(self, counts: dict[str, int], rows: int, nbytes: int) -> None:
        for k, n in counts.items():
            self.defects[k] += n
        self.rows += rows
        self.bytes += nbytes

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "files": self.files, "rows": self.rows, "bytes": self.bytes,
                "defects": dict(self.defects), "quarantined": self.quarantined,
                "duplicates": self.duplicates, "loaded": self.loaded}


@dataclass
class Manifest:
    seed: int
    scale: float
    defect_rate: float
    tables: dict[str, TableManifest]
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "scale": self.scale, "defect_rate": self.defect_rate,
                "rows": self.rows, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "tables": {k: v.as_dict() for k, v in self.tables.items()}}


# ---------------------------------------------------------------- vocabularies

_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
          "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
          "Mohammed", "Nancy", "Wei", "Lisa", "Ana", "Betty", "Hiroshi", "Sofia", "Lukas", "Emma"]
_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
         "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
         "Lee", "O'Brien", "Thompson", "White", "Harris", "Sanchez", "Clark", "Mueller", "Nguyen", "Kowalski"]
_DOMAINS = ["example.com", "mail.example.org", "inbox.example.net", "corp.example"]
_COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA", "AU", "SE", "PL", "BR"]
_COUNTRY_P = [0.3, 0.12, 0.1, 0.08, 0.05, 0.06, 0.06, 0.06, 0.05, 0.04, 0.04, 0.04]
_CURRENCY = ["USD", "GBP", "EUR", "EUR", "EUR", "EUR", "EUR", "CAD", "AUD", "SEK", "PLN", "BRL"]
_SEGMENTS = ["consumer", "business", "enterprise"]
_CATEGORIES = ["books", "electronics", "home", "garden", "toys", "sports", "beauty", "grocery"]
_ADJ = ["Classic", "Compact", "Deluxe", "Eco", "Smart", "Ultra", "Vintage", "Wireless", "Organic", "Portable"]
_NOUN = ["Lamp", "Backpack", "Headphones", "Kettle", "Notebook", "Sneakers", "Blender", "Tent", "Puzzle",
         "Serum", "Coffee Beans", "Yoga Mat", "Desk Chair", "Speaker", "Water Bottle", "Novel"]
_STATUS = ["F", "O", "P"]  # fulfilled, open, pending
_STATUS_P = [0.7, 0.2, 0.1]
_CHANNELS = ["web", "app", "store", "phone"]
_CHANNEL_P = [0.55, 0.3, 0.1, 0.05]
_COUPONS = ["WELCOME10", "SPRING24", "VIP2024", "FREESHIP", "BF2023", "SAVE15"]
_STREETS = ["Oak", "Maple", "Cedar", "Elm", "Pine", "Main", "High", "Church", "Mill", "Station", "Park", "Lake"]
_SUFFIX = ["Street", "Avenue", "Road", "Lane", "Way"]
_CITIES = ["Springfield", "Riverside", "Fairview", "Madison", "Georgetown", "Salem", "Bristol", "Clinton",
           "Ashland", "Oxford", "Burlington", "Manchester"]
_NOTES = ["Leave at the door", "Ring the bell, then knock", "Gift wrap please", "Deliver after 5pm",
          "Call on arrival", "Fragile: handle with care", "No substitutions", 'Add a "happy birthday" card',
          "Back entrance, next to the garage", "Signature required"]
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ShopApp/5.2.1 (iOS 17.4; iPhone15,2)",
    "ShopApp/5.2.0 (Android 14; SM-S911B)",
]
_EVENT_TYPES = ["page_view", "search", "add_to_cart", "checkout", "purchase", "login"]
_EVENT_P = [0.55, 0.15, 0.12, 0.06, 0.04, 0.08]
_PATHS = ["/", "/search", "/cart", "/checkout", "/account", "/products/", "/category/"]
_DEVICES = ["desktop", "mobile", "tablet"]

# what a defect of each kind looks like, per column
_BAD_DATES: list[str | None] = ["2024-02-30", "31/12/2023", "2023-13-01", "yesterday", "20230715", "n/a"]
_BAD_TIMESTAMPS: list[str | None] = ["2024-06-31T10:00:00Z", "1718000000", "last tuesday", "2024-13-01T00:00:00Z",
                   "31/12/2023 23:59"]
_MALFORMED = ["### export interrupted: connection reset by peer ###", "<html><body>502 Bad Gateway</body></html>",
              "\\.", "-- end of page 3 --"]

_EPOCH = date(1970, 1, 1)
_T0 = int((date(2022, 1, 1) - _EPOCH).days)  # first day of the data, as days since 1970
_SPAN_DAYS = 3 * 365


# ---------------------------------------------------------------- small vectorized helpers


def _rng(seed: int, table: str, part: int) -> np.random.Generator:
    """An independent stream per (seed, table, part): chunks are reproducible one by one."""
    return np.random.default_rng([seed, zlib.crc32(table.encode()), part])


def _pick(rng: np.random.Generator, values: list[str], n: int, p: list[float] | None = None) -> pl.Series:
    idx = rng.choice(len(values), size=n, p=p) if p is not None else rng.integers(0, len(values), n)
    return pl.Series(values, dtype=pl.Utf8).gather(idx)


def _money(cents: I64) -> pl.Series:
    s = pl.Series(cents, dtype=pl.Int64)
    a = s.abs()
    sign = pl.Series(np.where(cents < 0, "-", ""), dtype=pl.Utf8)
    return sign + (a // 100).cast(pl.Utf8) + "." + (a % 100).cast(pl.Utf8).str.zfill(2)


def _dates(days: I64) -> pl.Series:
    return pl.Series(days.astype(np.int32)).cast(pl.Date).cast(pl.Utf8)


def _timestamps(seconds: I64) -> pl.Series:
    return pl.from_epoch(pl.Series(seconds, dtype=pl.Int64), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ints(values: npt.NDArray[Any]) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.Utf8)


def _kinds(rng: np.random.Generator, n: int, rate: float, weights: dict[str, float]) -> Codes:
    """One defect code per row (0: clean), about `rate` of the rows hit, kinds drawn by `weights`."""
    out = np.zeros(n, np.int8)
    if rate <= 0 or n == 0:
        return out
    hit = np.flatnonzero(rng.random(n) < rate)
    names = list(weights)
    p = np.array([weights[k] for k in names])
    codes = np.array([_CODE[k] for k in names], np.int8)
    out[hit] = codes[rng.choice(len(names), size=hit.size, p=p / p.sum())]
    return out


def _expand(kinds: Codes) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Row order after duplicating: every duplicate-key row is followed by its copy. (source row, is copy)."""
    src = np.repeat(np.arange(kinds.size, dtype=np.int64), 1 + (kinds == _DUP))
    copy = np.zeros(src.size, np.bool_)
    copy[1:] = src[1:] == src[:-1]
    return src, copy


def _inject(cols: dict[str, pl.Series], kinds: Codes, kind: str, rng: np.random.Generator,
            options: list[tuple[str, list[str | None]]]) -> None:
    """Overwrite one column of every row of `kind` with a bad value (column and value drawn per row)."""
    idx = np.flatnonzero(kinds == _CODE[kind])
    if idx.size == 0:
        return
    which = rng.integers(0, len(options), idx.size)
    for o, (col, values) in enumerate(options):
        rows = idx[which == o]
        if rows.size:
            vals = [values[i] for i in rng.integers(0, len(values), rows.size)]
            cols[col] = cols[col].clone().scatter(rows, pl.Series(vals, dtype=pl.Utf8))


def _count(kinds: Codes, weights: dict[str, float]) -> dict[str, int]:
    return {k: int(np.count_nonzero(kinds == _CODE[k])) for k in weights}


def _uuids(rng: np.random.Generator, n: int) -> pl.Series:
    raw = np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4, RFC 4122 variant: valid wherever a uuid is parsed
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = pl.Series(np.frombuffer(binascii.hexlify(raw.tobytes()), dtype="S32")).cast(pl.Binary).cast(pl.Utf8)
    s = hexed.str
    return s.slice(0, 8) + "-" + s.slice(8, 4) + "-" + s.slice(12, 4) + "-" + s.slice(16, 4) + "-" + s.slice(20, 12)


# ---------------------------------------------------------------- encoding a chunk


@dataclass
class _Chunk:
    frame: pl.DataFrame  # text columns in table order; None is written as an empty field
    counts: dict[str, int]
    line_defects: tuple[int, int] = (0, 0)  # ragged, malformed lines to add when encoding


def _encode(chunk: _Chunk, rng: np.random.Generator) -> tuple[bytes, int]:
    """CSV bytes of the chunk (no header) with its ragged and malformed lines spliced in; records written."""
    buf = io.BytesIO()
    chunk.frame.write_csv(buf, include_header=False)
    data = buf.getvalue()
    ragged, malformed = chunk.line_defects
    if chunk.frame.height == 0 or ragged + malformed == 0:
        return data, chunk.frame.height
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)  # no value holds a newline: one line per row
    starts = np.concatenate(([0], ends[:-1] + 1))
    extra: list[tuple[int, bytes]] = []
    for i in range(ragged):
        j = int(rng.integers(0, ends.size))
        line = data[starts[j] : ends[j]]
        # a truncated record (the first fields are never quoted) or one with a field too many
        text = b",".join(line.split(b",")[:3]) if i % 2 == 0 else line + b",unexpected"
        extra.append((int(rng.integers(0, ends.size + 1)), text + b"\n"))
    for _ in range(malformed):
        text = _MALFORMED[int(rng.integers(0, len(_MALFORMED)))].encode()
        extra.append((int(rng.integers(0, ends.size + 1)), text + b"\n"))
    extra.sort(key=lambda e: e[0])
    bounds = np.concatenate((starts, [len(data)]))
    pieces: list[bytes] = []
    prev = 0
    for line_no, text in extra:
        at = int(bounds[line_no])
        pieces += [data[prev:at], text]
        prev = at
    pieces.append(data[prev:])
    return b"".join(pieces), chunk.frame.height + ragged + malformed


def _line_defects(rng: np.random.Generator, n: int, rate: float, first: bool) -> tuple[int, int]:
    """A few ragged and malformed lines per chunk; the first chunk of a table always has some."""
    if rate <= 0 or n == 0:
        return 0, 0
    ragged = int(rng.binomial(n, rate / 100)) + (2 if first else 0)
    malformed = int(rng.binomial(n, rate / 400)) + (1 if first else 0)
    return ragged, malformed


# ---------------------------------------------------------------- the shop


@dataclass
class _Pool:
    """Rows of a parent table that will load: what child rows may point to."""

    ids: I64
    extra: I64  # customers: country index; products: price in cents


class _Shop:
    def __init__(self, seed: int, rate: float) -> None:
        self.seed = seed
        self.rate = rate

    # ------------------------------------------------------------ customers

    def customers(self, part: int, first_id: int, n: int) -> tuple[_Chunk, _Pool]:
        spec = TABLES["customers"]
        rng = _rng(self.seed, spec.name, part)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        country = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P)
        segment = rng.choice(len(_SEGMENTS), size=n, p=[0.8, 0.15, 0.05])
        first = rng.integers(0, len(_FIRST), n)
        last = rng.integers(0, len(_LAST), n)
        signup = _T0 - 700 + rng.integers(0, _SPAN_DAYS + 700, n)
        updated = signup * 86400 + rng.integers(0, 400 * 86400, n)
        kinds = _kinds(rng, n, self.rate, spec.weights)
        src, copy = _expand(kinds)
        updated = updated[src] + copy * rng.integers(3600, 30 * 86400, src.size)
        segment = np.where(copy, (segment[src] + 1) % len(_SEGMENTS), segment[src])  # the newer row differs
        fn = pl.Series(_FIRST).gather(first[src])
        ln = pl.Series(_LAST).gather(last[src])
        cid = _ints(ids[src])
        email = (fn.str.to_lowercase() + "." + ln.str.to_lowercase().str.replace("'", "", literal=True)
                 + cid + "@" + pl.Series(_DOMAINS).gather(ids[src] % len(_DOMAINS)))
        cols = {
            "customer_id": cid, "email": email, "full_name": fn + " " + ln,
            "country": pl.Series(_COUNTRIES).gather(country[src]),
            "segment": pl.Series(_SEGMENTS).gather(segment), "signup_date": _dates(signup[src]),
            "updated_at": _timestamps(updated),
        }
        kg = np.where(copy, 0, kinds[src]).astype(np.int8)
        _inject(cols, kg, "null_required", rng, [("email", [None])])
        _inject(cols, kg, "bad_enum", rng, [("segment", ["vip", "Consumer", "unknown", "b2b"])])
        _inject(cols, kg, "bad_date", rng, [("signup_date", _BAD_DATES)])
        _inject(cols, kg, "bad_format", rng, [("email", ["jane.doe.example.com", "john@", "@example.com",
                                                         "mary smith@example.com"])])
        counts = _count(kinds, spec.weights)
        ok = (kinds == 0) | (kinds == _DUP)
        chunk = _Chunk(pl.DataFrame(cols).select(spec.columns), counts,
                       _line_defects(rng, n, self.rate, part == 0))
        return chunk, _Pool(ids[ok], country[ok])

    # ------------------------------------------------------------ products

    def products(self, part: int, first_id: int, n: int) -> tuple[_Chunk, _Pool]:
        spec = TABLES["products"]
        rng = _rng(self.seed, spec.name, part)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        price = np.clip(np.exp(rng.normal(7.6, 0.9, n)), 99, 250_000).astype(np.int64)
        price = price - price % 100 + 99  # $xx.99
        created = _T0 - 365 + rng.integers(0, _SPAN_DAYS, n)
        updated = created * 86400 + rng.integers(0, 200 * 86400, n)
        kinds = _kinds(rng, n, self.rate, spec.weights)
        src, copy = _expand(kinds)
        new_price = np.where(copy, price[src] + 100 * rng.integers(1, 10, src.size), price[src])
        cols = {
            "product_id": _ints(ids[src]),
            "sku": "SKU-" + _ints(ids[src]).str.zfill(6),
            "name": _pick(rng, _ADJ, n).gather(src) + " " + _pick(rng, _NOUN, n).gather(src),
            "category": _pick(rng, _CATEGORIES, n).gather(src),
            "price": _money(new_price), "created_at": _dates(created[src]),
            "updated_at": _timestamps(updated[src] + copy * rng.integers(3600, 30 * 86400, src.size)),
        }
        kg = np.where(copy, 0, kinds[src]).astype(np.int8)
        _inject(cols, kg, "null_required", rng, [("name", [None])])
        _inject(cols, kg, "bad_enum", rng, [("category", ["Books", "misc", "furniture", "?"])])
        _inject(cols, kg, "negative_amount", rng, [("price", ["-19.99", "-0.01", "-250.00"])])
        _inject(cols, kg, "bad_date", rng, [("created_at", _BAD_DATES)])
        _inject(cols, kg, "bad_format", rng, [("sku", ["SKU-12", "sku-000123", "SKU_000777", "000123"])])
        ok = (kinds == 0) | (kinds == _DUP)
        chunk = _Chunk(pl.DataFrame(cols).select(spec.columns), _count(kinds, spec.weights),
                       _line_defects(rng, n, self.rate, part == 0))
        return chunk, _Pool(ids[ok], price[ok])

    # ------------------------------------------------------------ orders (and their items)

    def orders(self, part: int, first_id: int, n: int, customers: _Pool | None, products: _Pool | None,
               n_customers: int = 0) -> tuple[_Chunk, _Chunk | None]:
        spec = TABLES["orders"]
        rng = _rng(self.seed, spec.name, part)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        # a few customers order a lot: the square of a uniform skews towards the start of the pool
        pool_n = customers.ids.size if customers is not None else max(1, n_customers)
        who = (rng.random(n) ** 2 * pool_n).astype(np.int64)
        if customers is not None:
            cust = customers.ids[who]
            country = customers.extra[who]
        else:
            cust = who + 1
            country = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P)
        ordered = _T0 + np.sort(rng.integers(0, _SPAN_DAYS, n))
        updated = ordered * 86400 + rng.integers(0, 5 * 86400, n)
        status = rng.choice(3, size=n, p=_STATUS_P)
        channel = rng.choice(4, size=n, p=_CHANNEL_P)
        items: dict[str, I64] | None = None
        if products is not None and products.ids.size:
            n_items = 1 + rng.binomial(4, 0.35, n)
            order_idx = np.repeat(np.arange(n), n_items)
            line_no = np.arange(order_idx.size) - np.repeat(np.cumsum(n_items) - n_items, n_items) + 1
            prod = rng.integers(0, products.ids.size, order_idx.size)
            qty = 1 + rng.binomial(3, 0.2, order_idx.size)
            unit = products.extra[prod]
            subtotal = np.bincount(order_idx, weights=qty * unit, minlength=n).astype(np.int64)
            items = {"order": order_idx, "line_no": line_no, "product_id": products.ids[prod], "quantity": qty,
                     "unit_price": unit}
        else:
            subtotal = np.clip(np.exp(rng.normal(8.3, 1.0, n)), 199, 5_000_000).astype(np.int64)
        has_coupon = rng.random(n) < 0.2
        discount = np.where(has_coupon, subtotal * rng.choice([5, 10, 15, 20], n) // 100, 0)
        total = subtotal - discount
        kinds = _kinds(rng, n, self.rate, spec.weights)
        src, copy = _expand(kinds)
        m = src.size
        online = channel[src] < 2
        cols = {
            "order_id": _ints(ids[src]), "customer_id": _ints(cust[src]),
            # the newer copy of an order has moved on: open or pending orders get fulfilled
            "status": pl.Series(_STATUS).gather(np.where(copy, 0, status[src])),
            "total": _money(total[src]), "ordered_at": _dates(ordered[src]),
            "updated_at": _timestamps(updated[src] + copy * rng.integers(3600, 3 * 86400, m)),
            "channel": pl.Series(_CHANNELS).gather(channel[src]),
            "currency": pl.Series(_CURRENCY).gather(country[src]),
            "discount": _money(discount[src]),
            "coupon_code": pl.Series(_COUPONS).gather(rng.integers(0, len(_COUPONS), m)).zip_with(
                pl.Series(has_coupon[src]), pl.Series([None] * m, dtype=pl.Utf8)),
            "ship_country": pl.Series(_COUNTRIES).gather(country[src]),
            "ship_address": (_ints(rng.integers(1, 2500, m)) + " " + _pick(rng, _STREETS, m) + " "
                             + _pick(rng, _SUFFIX, m) + ", " + _pick(rng, _CITIES, m)),
            "client_ip": (_ints(rng.integers(1, 224, m)) + "." + _ints(rng.integers(0, 256, m)) + "."
                          + _ints(rng.integers(0, 256, m)) + "." + _ints(rng.integers(1, 255, m))).zip_with(
                pl.Series(online), pl.Series([None] * m, dtype=pl.Utf8)),
            "user_agent": _pick(rng, _AGENTS, m).zip_with(pl.Series(online), pl.Series([None] * m, dtype=pl.Utf8)),
            "note": _pick(rng, _NOTES, m).zip_with(pl.Series(rng.random(m) < 0.3),
                                                   pl.Series([None] * m, dtype=pl.Utf8)),
        }
        kg = np.where(copy, 0, kinds[src]).astype(np.int8)
        _inject(cols, kg, "null_required", rng, [("customer_id", [None]), ("ordered_at", [None])])
        _inject(cols, kg, "bad_enum", rng, [("status", ["X", "shipped", "f", "CANCELLED"])])
        idx = np.flatnonzero(kg == _CODE["negative_amount"])
        if idx.size:
            cols["total"] = cols["total"].clone().scatter(idx, _money(-total[src][idx] - 1))
        _inject(cols, kg, "bad_date", rng, [("ordered_at", _BAD_DATES)])
        _inject(cols, kg, "bad_format", rng, [("currency", ["usd", "US$", "EURO", "€"])])
        idx = np.flatnonzero(kg == _CODE["rule_violation"])
        if idx.size:  # a discount larger than the order: the row rule catches it, no column rule does
            cols["discount"] = cols["discount"].clone().scatter(idx, _money(total[src][idx] + 500))
        chunk = _Chunk(pl.DataFrame(cols).select(spec.columns), _count(kinds, spec.weights),
                       _line_defects(rng, n, self.rate, part == 0))
        if items is None:
            return chunk, None
        loads = (kinds == 0) | (kinds == _DUP)
        keep = loads[items["order"]]  # items only of orders that load: no orphans
        return chunk, self._items(part, ids[items["order"][keep]], {k: v[keep] for k, v in items.items()})

    def _items(self, part: int, order_ids: I64, items: dict[str, I64]) -> _Chunk:
        spec = TABLES["order_items"]
        rng = _rng(self.seed, spec.name, part)
        n = order_ids.size
        kinds = _kinds(rng, n, self.rate, spec.weights)
        src, copy = _expand(kinds)  # a line sent twice: identical
        cols = {
            "order_id": _ints(order_ids[src]), "line_no": _ints(items["line_no"][src]),
            "product_id": _ints(items["product_id"][src]), "quantity": _ints(items["quantity"][src]),
            "unit_price": _money(items["unit_price"][src]),
        }
        kg = np.where(copy, 0, kinds[src]).astype(np.int8)
        _inject(cols, kg, "null_required", rng, [("product_id", [None])])
        _inject(cols, kg, "negative_amount", rng, [("quantity", ["-1", "0"]), ("unit_price", ["-4.99", "-0.50"])])
        return _Chunk(pl.DataFrame(cols).select(spec.columns), _count(kinds, spec.weights),
                      _line_defects(rng, n, self.rate, part == 0))

    # ------------------------------------------------------------ events

    def events(self, part: int, first_id: int, n: int, total: int, customers: _Pool) -> _Chunk:
        spec = TABLES["events"]
        rng = _rng(self.seed, spec.name, part)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        # event ids follow time: spread the whole span over all events, with jitter
        t = _T0 * 86400 + (ids - 1) * (_SPAN_DAYS * 86400 // max(1, total)) + rng.integers(0, 600, n)
        user = customers.ids[(rng.random(n) ** 2 * customers.ids.size).astype(np.int64)]
        kinds = _kinds(rng, n, self.rate, spec.weights)
        src, copy = _expand(kinds)  # an event delivered twice: identical
        etype = rng.choice(len(_EVENT_TYPES), size=n, p=_EVENT_P)
        path = _pick(rng, _PATHS, n)
        path = path + _ints(rng.integers(1, 999, n)).zip_with(  # /products/17, /category/3
            path.str.ends_with("/") & (path != "/"), pl.Series([""] * n, dtype=pl.Utf8))
        payload = ('{"path": "' + path + '", "device": "' + _pick(rng, _DEVICES, n) + '", "duration_ms": '
                   + _ints(rng.integers(5, 30_000, n)) + "}")
        cols = {
            "event_id": _ints(ids[src]), "user_id": _ints(user[src]), "session_id": _uuids(rng, n).gather(src),
            "event_type": pl.Series(_EVENT_TYPES).gather(etype[src]), "occurred_at": _timestamps(t[src]),
            "payload": payload.gather(src),
        }
        kg = np.where(copy, 0, kinds[src]).astype(np.int8)
        _inject(cols, kg, "null_required", rng, [("user_id", [None])])
        _inject(cols, kg, "bad_enum", rng, [("event_type", ["pageview", "CLICK", "unknown"])])
        _inject(cols, kg, "bad_date", rng, [("occurred_at", _BAD_TIMESTAMPS)])
        _inject(cols, kg, "bad_json", rng, [("payload", ['{"path": "/cart"', "{path: /cart}", "<html>",
                                                         "{'device': 'mobile'}"])])
        return _Chunk(pl.DataFrame(cols).select(spec.columns), _count(kinds, spec.weights),
                      _line_defects(rng, n, self.rate, part == 0))


# ---------------------------------------------------------------- writing


def table_rows(scale: float) -> dict[str, int]:
    """Rows of each generated table (before defects) at `scale`; order_items follow the orders."""
    return {name: max(5, round(s.base_rows * scale)) for name, s in TABLES.items() if s.base_rows}


def _parts(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    """(part number, first id, rows) covering ids 1..n in parts of `size`."""
    for part, start in enumerate(range(0, n, size)):
        yield part, start + 1, min(size, n - start)


def _write_part(out_dir: Path, man: TableManifest, part: int, chunk: _Chunk, rng: np.random.Generator) -> None:
    spec = TABLES[man.table]
    rel = f"data/{spec.name}/{spec.name}_{part + 1:04d}.csv"
    data, records = _encode(chunk, rng)
    head = (",".join(spec.columns) + "\n").encode()
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(head)
        fh.write(data)
    counts = dict(chunk.counts)
    counts["ragged_line"], counts["malformed_line"] = chunk.line_defects
    man.files.append(rel)
    man.add(counts, records, len(head) + len(data))


def generate(out_dir: Path, *, scale: float = 1.0, seed: int = 42, defect_rate: float = 0.03,
             part_rows: int = PART_ROWS) -> Manifest:
    """Write the shop's tables under `out_dir/data/<table>/` as CSV files of at most `part_rows` records
    (plus duplicates and bad lines) each; the same seed writes the same bytes."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not 0 <= defect_rate < 0.5:
        raise ValueError(f"defect_rate must be in [0, 0.5), got {defect_rate}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    sizes = table_rows(scale)
    shop = _Shop(seed, defect_rate)
    man = {name: TableManifest(name) for name in TABLES}
    pools: dict[str, list[_Pool]] = {"customers": [], "products": []}
    for table, make in (("customers", shop.customers), ("products", shop.products)):
        for part, first, n in _parts(sizes[table], part_rows):
            chunk, pool = make(part, first, n)
            pools[table].append(pool)
            _write_part(out_dir, man[table], part, chunk, _rng(seed, table + "+", part))
    customers = _Pool(np.concatenate([p.ids for p in pools["customers"]]),
                      np.concatenate([p.extra for p in pools["customers"]]))
    products = _Pool(np.concatenate([p.ids for p in pools["products"]]),
                     np.concatenate([p.extra for p in pools["products"]]))
    for part, first, n in _parts(sizes["orders"], part_rows):
        orders, items = shop.orders(part, first, n, customers, products)
        _write_part(out_dir, man["orders"], part, orders, _rng(seed, "orders+", part))
        assert items is not None
        _write_part(out_dir, man["order_items"], part, items, _rng(seed, "order_items+", part))
    for part, first, n in _parts(sizes["events"], part_rows):
        chunk = shop.events(part, first, n, sizes["events"], customers)
        _write_part(out_dir, man["events"], part, chunk, _rng(seed, "events+", part))
    return Manifest(seed, scale, defect_rate, man, time.perf_counter() - started)


def write_orders_csv(path: Path, rows: int, *, seed: int = 42, defect_rate: float = 0.0,
                     chunk_rows: int = BENCH_CHUNK_ROWS, customers: int | None = None) -> TableManifest:
    """One big orders CSV of `rows` orders (plus injected duplicates and bad lines when `defect_rate` > 0)
    in the demo orders schema, for benchmarks; written chunk by chunk, the next chunk generated while the
    last one is written."""
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shop = _Shop(seed, defect_rate)
    n_customers = customers or max(1, rows // 20)
    man = TableManifest("orders", [str(path)])
    spec = TABLES["orders"]

    def make(part: int, first: int, n: int) -> tuple[bytes, int, dict[str, int]]:
        chunk, _ = shop.orders(part, first, n, None, None, n_customers)
        data, records = _encode(chunk, _rng(seed, "orders+", part))
        counts = dict(chunk.counts)
        counts["ragged_line"], counts["malformed_line"] = chunk.line_defects
        return data, records, counts

    with path.open("wb") as fh, ThreadPoolExecutor(max_workers=2, thread_name_prefix="pgmill-datagen") as pool:
        head = (",".join(spec.columns) + "\n").encode()
        fh.write(head)
        man.bytes += len(head)
        _write_ahead(fh, man, pool.submit, [(make, p) for p in _parts(rows, chunk_rows)])
    return man


def _write_ahead(fh: BinaryIO, man: TableManifest, submit: Callable[..., Any],
                 jobs: list[tuple[Callable[..., tuple[bytes, int, dict[str, int]]], tuple[int, int, int]]]) -> None:
    """Run the jobs two at a time, writing their output in order (bounded: at most two chunks in memory)."""
    pending: list[Any] = []
    for fn, args in jobs:
        pending.append(submit(fn, *args))
        if len(pending) >= 2:
            _drain(fh, man, pending.pop(0).result())
    for fut in pending:
        _drain(fh, man, fut.result())


def _drain(fh: BinaryIO, man: TableManifest, out: tuple[bytes, int, dict[str, int]]) -> None:
    data, records, counts = out
    fh.write(data)
    man.add(counts, records, len(data))
