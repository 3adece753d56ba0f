"""HTTP JSON API loads end to end: every pagination style, credentials, retries, resumes, concurrency."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest

from pgmill.config.spec import HttpSource
from pgmill.errors import SourceError, TransientError
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources import http
from pgmill.ingest.sources.base import RawBatch, SourceState
from pgmill.project import open_project
from pgmill.redact import redact_text, redact_url, secret_name
from tests.fake_api import FakeApi, make_records
from tests.helpers import ProjectDir, run_one, table_checksum

CONTRACT: dict[str, Any] = {
    "columns": {
        "id": {"type": "bigint", "primary_key": True},
        "customer": {"type": "jsonb"},
        "status": {"type": "text", "accepted_values": ["F", "O", "P"]},
        "total": {"type": "numeric(12,2)", "min": 0},
        "tags": {"type": "jsonb"},
        "updated_at": {"type": "timestamptz", "not_null": True},
    }
}
FAST_RETRY = {"attempts": 3, "initial_s": 0.01, "max_s": 0.02}
EMPTY = SourceState({}, None, {})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "RETRY_INITIAL_S", 0.001)
    monkeypatch.setattr(http, "RETRY_MAX_S", 0.005)


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeApi]]:
    started: list[FakeApi] = []

    def start(records: list[Any] | None = None, **kw: Any) -> FakeApi:
        api = FakeApi(make_records(137) if records is None else records, **kw).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


def write_pipelines(project: ProjectDir, sources: dict[str, dict[str, Any]], **kw: Any) -> None:
    project.contract("items", CONTRACT)
    pipes = {}
    for name, src in sources.items():
        spec = {"source": src, "table": f"public.{name}", "contract": "contracts/items.yaml", "mode": "merge",
                "batch_rows": 25}
        spec.update(kw)
        pipes[name] = spec
    project.config(pipes, retry=FAST_RETRY)


def read_all(spec: HttpSource, state: SourceState = EMPTY, batch_rows: int = 25) -> list[RawBatch]:
    return list(http.read_http(spec, state, batch_rows))


def ids(batches: list[RawBatch]) -> list[int]:
    return [i for b in batches if b.table.num_columns for i in b.table.column("id").to_pylist()]


def http_state(project: ProjectDir, pipeline: str = "items") -> dict[str, Any]:
    st: dict[str, Any] = project.scalar("SELECT state FROM pgmill.state WHERE pipeline = %s", (pipeline,))
    return st["http"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- every style, end to end


@pytest.mark.parametrize(("style", "server"), [
    ("page", {}),
    ("page", {"records_key": None, "first_page": 0}),
    ("offset", {}),
    ("cursor", {"cursor_key": "meta.next"}),
    ("link", {}),
    ("link", {"relative_links": True, "records_key": None}),
    ("none", {}),
])
def test_every_pagination_style_loads_the_whole_api(
    project: ProjectDir, serve: Callable[..., FakeApi], style: str, server: dict[str, Any]
) -> None:
    api = serve(style=style, **server)
    write_pipelines(project, {"items": api.source()})
    run = run_one()
    c = run.counts
    assert (c.rows_read, c.rows_inserted, c.rows_quarantined, c.rows_duplicate) == (137, 137, 0, 0)
    assert c.bytes_read > 0
    assert project.query("SELECT count(*), count(DISTINCT id), min(id), max(id), sum(total)::text FROM items") == [
        (137, 137, 1, 137, str(sum(Decimal(str(r["total"])) for r in make_records(137))))
    ]
    row = project.query("SELECT customer->>'name', tags, total::text, updated_at FROM items WHERE id = 7")
    assert row == [("customer 0", ["a", "b", "c"], "8.75", datetime(2024, 1, 1, 0, 7, tzinfo=UTC))]
    assert project.scalar("SELECT tags FROM items WHERE id = 4") == []
    assert http_state(project)["done"] is True
    if style in ("page", "offset", "cursor", "link"):
        assert len(api.requests_for("200")) >= 14  # 137 records, 10 a page: the source really paginated


def test_finished_sweep_starts_again_from_the_first_page(project: ProjectDir, serve: Callable[..., FakeApi]) -> None:
    api = serve(style="page")
    write_pipelines(project, {"items": api.source()})
    run_one()
    api.seen.clear()
    again = run_one()
    assert (again.counts.rows_read, again.counts.rows_inserted, again.counts.rows_unchanged) == (137, 0, 137)
    assert api.seen[0].query["page"] == "1"
    assert project.scalar("SELECT count(*) FROM items") == 137


def test_cursor_param_asks_only_for_records_newer_than_the_loaded_ones(
    project: ProjectDir, serve: Callable[..., FakeApi]
) -> None:
    api = serve(make_records(30), style="cursor", since_param="since")
    write_pipelines(project, {"items": api.source(cursor_param="since")}, cursor="updated_at")
    first = run_one()
    assert first.counts.rows_inserted == 30
    assert all("since" not in s.query for s in api.seen)

    api.records.extend(make_records(5, start=31))
    api.seen.clear()
    second = run_one()
    assert (second.counts.rows_read, second.counts.rows_inserted) == (5, 5)
    sent = {s.query["since"] for s in api.seen}
    assert len(sent) == 1
    assert datetime.fromisoformat(sent.pop()) == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    assert project.scalar("SELECT count(*) FROM items") == 35


# ---------------------------------------------------------------- credentials and secrets


SECRET = "s3cret-token-4f9a2c"


def test_auth_header_comes_from_the_environment(
    project: ProjectDir, serve: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITEMS_API_TOKEN", f"Bearer {SECRET}")
    api = serve(style="link", token=SECRET)
    bad = make_records(3)
    bad[1]["status"] = "X"
    api.records[:3] = bad
    write_pipelines(project, {"items": api.source(auth_env="ITEMS_API_TOKEN")})
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (136, 1)
    assert {s.headers["authorization"] for s in api.seen} == {f"Bearer {SECRET}"}
    stored = project.query("SELECT source_location FROM pgmill.quarantine")[0][0]
    assert stored == f"GET {api.url}:record 2"
    everything = json.dumps(project.query("SELECT state::text FROM pgmill.state")) + stored
    assert SECRET not in everything


def test_missing_token_variable_is_named_and_nothing_is_sent(
    project: ProjectDir, serve: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ITEMS_API_TOKEN", raising=False)
    api = serve(style="page", token=SECRET)
    write_pipelines(project, {"items": api.source(auth_env="ITEMS_API_TOKEN")})
    with pytest.raises(SourceError, match="environment variable ITEMS_API_TOKEN is not set"):
        run_one()
    assert project.query("SELECT status, retries FROM pgmill.runs") == [("failed", 0)]
    assert "ITEMS_API_TOKEN" in project.scalar("SELECT error FROM pgmill.runs")
    assert api.seen == []


def test_rejected_credentials_fail_fast_with_a_redacted_message(
    project: ProjectDir, serve: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITEMS_API_TOKEN", f"Bearer wrong-{SECRET}")
    api = serve(style="page", token=SECRET)
    src = api.source(auth_env="ITEMS_API_TOKEN", params={"api_key": "k-771234", "region": "eu"})
    write_pipelines(project, {"items": src})
    with pytest.raises(SourceError, match="HTTP 401"):
        run_one()
    status, error, retries = project.query("SELECT status, error, retries FROM pgmill.runs")[0]
    assert (status, retries) == ("failed", 0)
    assert "HTTP 401 Unauthorized; check the credential in environment variable ITEMS_API_TOKEN" in error
    assert "api_key=***" in error and "region=eu" in error and "missing or wrong token" in error
    assert "k-771234" not in error and SECRET not in error
    assert len(api.seen) == 1


def test_redact_url_hides_passwords_and_key_like_parameters() -> None:
    url = "https://me:pw@api.example.com/v1/items?api_key=abc&page=2&access_token=t&sig=x&apiKey=k"
    assert redact_url(url) == (
        "https://me:***@api.example.com/v1/items?api_key=***&page=2&access_token=***&sig=***&apiKey=***"
    )
    assert redact_text("no answer from https://h/x?token=abc#top, giving up") == (
        "no answer from https://h/x?token=***, giving up"
    )


def test_one_secret_name_rule_for_parameters_and_settings() -> None:
    hidden = ["api_key", "apiKey", "X-Api-Key", "password", "passwd", "pwd", "client_secret", "access_token",
              "Authorization", "cookie", "session_id", "signature", "credentials", "sig", "code", "jwt"]
    shown = ["page", "per_page", "region", "zipcode", "design", "cursor", "url"]
    assert [n for n in hidden if not secret_name(n)] == []
    assert [n for n in shown if secret_name(n)] == []


def test_secret_is_not_sent_to_another_origin(
    serve: Callable[..., FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITEMS_API_TOKEN", f"Bearer {SECRET}")
    elsewhere = serve(make_records(30), style="link")
    api = serve(make_records(30), style="link", token=SECRET, link_base=elsewhere.base)
    spec = HttpSource.model_validate(api.source(auth_env="ITEMS_API_TOKEN"))
    assert ids(read_all(spec)) == list(range(1, 31))
    assert [s.headers.get("authorization") for s in api.seen] == [f"Bearer {SECRET}"]
    assert len(elsewhere.seen) == 2 and all("authorization" not in s.headers for s in elsewhere.seen)


# ---------------------------------------------------------------- retries


def test_429_with_retry_after_is_waited_out(project: ProjectDir, serve: Callable[..., FakeApi]) -> None:
    api = serve(style="offset", retry_after="0")
    api.fail_next("429", 3)
    write_pipelines(project, {"items": api.source()})
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.retries) == (137, 137, 0)
    assert [s.outcome for s in api.seen[:4]] == ["429", "429", "429", "200"]
    assert api.seen[3].query["offset"] == "0"


def test_retry_after_longer_than_the_cap_hands_over_to_the_runner(serve: Callable[..., FakeApi]) -> None:
    api = serve(style="page", retry_after="3600")
    api.fail_next("429")
    with pytest.raises(TransientError, match="asks to wait 3600 s"):
        read_all(HttpSource.model_validate(api.source()))
    assert len(api.seen) == 1


def test_retry_after_forms() -> None:
    assert http._retry_after("0") == 0.0
    assert http._retry_after("2.5") == 2.5
    assert http._retry_after(None) is None
    assert http._retry_after("soon") is None
    assert http._retry_after(format_datetime(datetime.now(UTC) - timedelta(minutes=1), usegmt=True)) == 0.0
    later = http._retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True))
    assert later is not None and 100 < later <= 120


@pytest.mark.parametrize(("style", "concurrency"), [("page", 4), ("offset", 1), ("cursor", 1), ("link", 1)])
def test_flaky_api_still_gives_a_complete_duplicate_free_table(
    project: ProjectDir, serve: Callable[..., FakeApi], style: str, concurrency: int
) -> None:
    api = serve(make_records(400), style=style, failure_rate=0.1, seed=11,
                failure_kinds=("429", "503", "500", "reset", "truncate"))
    api.fail_next("reset")
    api.fail_next("truncate")
    write_pipelines(project, {"items": api.source(concurrency=concurrency)}, batch_rows=50)
    run = run_one()
    c = run.counts
    assert (c.rows_read, c.rows_inserted, c.rows_duplicate, c.rows_quarantined) == (400, 400, 0, 0)
    assert project.query("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM items") == [(400, 400, 1, 400)]
    assert len([s for s in api.seen if s.outcome != "200"]) >= 2


def test_exhausted_retries_raise_a_transient_error(project: ProjectDir, serve: Callable[..., FakeApi]) -> None:
    api = serve(style="page")
    api.outage_after(0)
    with pytest.raises(TransientError, match=r"HTTP 503 Service Unavailable \(gave up after 5 attempts\)"):
        read_all(HttpSource.model_validate(api.source()))
    assert len(api.seen) == http.ATTEMPTS

    write_pipelines(project, {"items": api.source()})
    with pytest.raises(TransientError):
        run_one()
    status, error, retries = project.query("SELECT status, error, retries FROM pgmill.runs")[0]
    assert (status, retries) == ("failed", FAST_RETRY["attempts"] - 1)
    assert "HTTP 503" in error and "page=1" in error


# ---------------------------------------------------------------- checkpoints


def test_failed_run_resumes_at_its_last_checkpoint(project: ProjectDir, serve: Callable[..., FakeApi]) -> None:
    api = serve(make_records(100), style="page")
    api.outage_after(5)
    write_pipelines(project, {"items": api.source()}, batch_rows=20)
    with pytest.raises(TransientError):
        run_one()
    # pages 1-4 made two committed batches; page 5 waited for page 6 to fill its batch
    assert project.scalar("SELECT count(*) FROM items") == 40
    assert http_state(project) | {"sweep": None} == {
        "sweep": None, "since": None, "records": 40, "done": False, "at": 5, "skip": 0}

    api.outage_after(None)
    api.seen.clear()
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted) == (60, 60)
    assert api.seen[0].query["page"] == "5"
    assert project.query("SELECT count(*), count(DISTINCT id) FROM items") == [(100, 100)]


@pytest.mark.parametrize(("style", "server"), [
    ("page", {}), ("offset", {}), ("cursor", {}), ("link", {}), ("none", {}), ("page", {"first_page": 0}),
])
def test_every_checkpoint_resumes_exactly_after_its_batch(
    serve: Callable[..., FakeApi], style: str, server: dict[str, Any]
) -> None:
    api = serve(make_records(53), style=style, **server)
    spec = HttpSource.model_validate(api.source())
    batches = read_all(spec, batch_rows=7)  # batches end mid-page
    assert ids(batches) == list(range(1, 54))
    assert [p for b in batches for p in (b.positions or [])] == list(range(1, 54))
    for k, b in enumerate(batches[:-1]):
        assert b.checkpoint is not None
        rest = read_all(spec, SourceState(b.checkpoint, None, {}), batch_rows=7)
        assert ids(rest) == ids(batches[k + 1:])
        assert [p for r in rest for p in (r.positions or [])] == list(range(7 * (k + 1) + 1, 54))
    assert batches[-1].checkpoint is not None and batches[-1].checkpoint["http"]["done"] is True
    # a finished sweep is not resumed: the next read starts over
    assert ids(read_all(spec, SourceState(batches[-1].checkpoint, None, {}))) == list(range(1, 54))


def test_checkpoint_of_a_differently_configured_source_is_not_resumed(serve: Callable[..., FakeApi]) -> None:
    api = serve(make_records(40), style="page")
    first = read_all(HttpSource.model_validate(api.source()), batch_rows=10)
    assert first[1].checkpoint is not None and first[1].checkpoint["http"]["at"] == 3
    other = HttpSource.model_validate(api.source(pagination={"size": 20}))
    assert ids(read_all(other, SourceState(first[1].checkpoint, None, {}))) == list(range(1, 41))


# ---------------------------------------------------------------- concurrency


@pytest.mark.parametrize("style", ["page", "offset"])
def test_concurrent_pages_give_the_same_table_as_sequential(
    project: ProjectDir, serve: Callable[..., FakeApi], style: str
) -> None:
    records = make_records(233)
    records[16]["status"] = "X"  # a quarantined record must be named the same way either way
    seq = serve(records, style=style, delay_s=0.005)
    par = serve(records, style=style, delay_s=0.02)
    write_pipelines(project, {"seq": seq.source(), "par": par.source(concurrency=8)})
    ctx = open_project()
    [a] = run_pipelines(ctx, ["seq"])
    [b] = run_pipelines(ctx, ["par"])
    assert a.status == b.status == "succeeded"
    assert (a.counts.rows_inserted, a.counts.rows_quarantined) == (b.counts.rows_inserted, b.counts.rows_quarantined)
    assert (b.counts.rows_inserted, b.counts.rows_quarantined) == (232, 1)
    assert table_checksum(project.db_url, "seq", "id") == table_checksum(project.db_url, "par", "id")
    where = project.query("SELECT pipeline, source_location FROM pgmill.quarantine ORDER BY pipeline")
    assert where == [("par", f"GET {par.url}:record 17"), ("seq", f"GET {seq.url}:record 17")]
    assert par.max_in_flight >= 2 and seq.max_in_flight == 1
    # the read stops at the first short page: at most `concurrency` requests go past it
    assert 24 <= len(par.seen) <= 24 + 8


def test_concurrent_read_stops_at_the_first_short_page(serve: Callable[..., FakeApi]) -> None:
    api = serve(make_records(100), style="page", max_page_size=7)  # the API serves fewer than asked
    spec = HttpSource.model_validate(api.source(concurrency=4))
    assert ids(read_all(spec)) == list(range(1, 8))
    # pages 2-4 may be asked for (they were in flight), never a page beyond them
    asked = {s.query["page"] for s in api.seen}
    assert "1" in asked and asked <= {"1", "2", "3", "4"}


# ---------------------------------------------------------------- shapes of records


def test_records_that_are_not_objects_are_quarantined(project: ProjectDir, serve: Callable[..., FakeApi]) -> None:
    records: list[Any] = make_records(6)
    records[1] = 42
    records[3] = {}
    records[4] = ["a", "list"]
    api = serve(records, style="page")
    write_pipelines(project, {"items": api.source()})
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.counts.rows_quarantined) == (6, 3, 3)
    rows = project.query("SELECT source_location, raw_text, violations FROM pgmill.quarantine ORDER BY 1")
    assert [(r[0].rsplit(":", 1)[1], r[1]) for r in rows] == [
        ("record 2", "42"), ("record 4", "{}"), ("record 5", '["a","list"]')]
    assert rows[0][2][0]["message"] == "record is a JSON number, not an object with fields"


def test_records_path_that_is_not_in_the_response(serve: Callable[..., FakeApi]) -> None:
    api = serve(style="page")
    with pytest.raises(SourceError, match=r"has no 'items' \(records_path\); it has: count, data"):
        read_all(HttpSource.model_validate(api.source(records_path="items")))


def test_object_body_without_records_path_names_the_candidates(serve: Callable[..., FakeApi]) -> None:
    api = serve(style="none")
    src = api.source()
    del src["records_path"]
    with pytest.raises(SourceError, match=r"set records_path .*\(lists in it: data\)"):
        read_all(HttpSource.model_validate(src))


def test_unknown_path_is_a_permanent_error(serve: Callable[..., FakeApi]) -> None:
    api = serve(style="page")
    with pytest.raises(SourceError, match=r"HTTP 404 Not Found; check the source's url"):
        read_all(HttpSource.model_validate(api.source(url=api.base + "/nothing")))
    assert len(api.seen) == 1


def test_json_values_become_columns_without_losing_anything() -> None:
    body = json.loads(
        '[{"a": 1, "b": "x", "c": {"k": [1, 2.50]}, "d": true, "e": 12345678901234567.891},'
        ' {"a": 99999999999999999999, "b": 7, "c": "plain", "f": null},'
        ' {"a": null, "d": false, "e": 1e3}]',
        parse_float=Decimal,
    )
    t = http.records_table(body)
    assert t.column_names == ["a", "b", "c", "d", "e", "f"]
    assert t.to_pydict() == {
        "a": ["1", "99999999999999999999", None],
        "b": ["x", "7", None],
        "c": ['{"k":[1,2.5]}', '"plain"', None],
        "d": [True, None, False],
        "e": ["12345678901234567.891", None, "1E+3"],
        "f": [None, None, None],
    }
