"""`pgmill dashboard --export DIR`: the dashboard's pages as static HTML files that open from disk with no
server (index.html is the overview); the run pages of the runs the other pages link to come along."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgmill.project import ProjectContext
from pgmill.web.pages import PAGES, render_run
from pgmill.web.reading import Reader
from pgmill.web.view import Links, View

MAX_RUN_PAGES = 500  # run pages written at most (the newest linked first)
_RUN_LINK = re.compile(r'href="run-(\d+)\.html"')


@dataclass
class ExportReport:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def as_dict(self) -> dict[str, object]:
        return {"out_dir": str(self.out_dir), "files": len(self.files), "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "index": str(self.out_dir / "index.html")}


def export_dashboard(ctx: ProjectContext, out_dir: Path | str, *,
                     progress: Callable[[str], None] | None = None) -> ExportReport:
    """Write every page into `out_dir` (created if needed; files of an earlier export are overwritten)."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(out)
    links = Links(static=True)
    with Reader(ctx, "pgmill dashboard export").session() as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        view = View(ctx, conn, now, links)
        run_ids: set[int] = set()
        for page in PAGES:
            html = page.render(view)
            run_ids.update(int(m) for m in _RUN_LINK.findall(html))
            report.files.append(_write(out / links.page(page.name), html))
            if progress:
                progress(page.name)
        # the newest linked first; a run page's own links (the runs of the same command) come along while
        # there is room, and a link to a run page that was not written is taken out
        todo, written = sorted(run_ids), set[int]()
        while todo and len(written) < MAX_RUN_PAGES:
            run_id = todo.pop()
            html = render_run(view, run_id)
            written.add(run_id)
            linked = {int(m) for m in _RUN_LINK.findall(html)} - written - set(todo)
            todo = sorted({*todo, *linked})
            report.files.append(_write(out / links.run(run_id), html))
        for f in report.files:
            html = f.read_text(encoding="utf-8")
            fixed = _RUN_LINK.sub(lambda m: m.group(0) if int(m.group(1)) in written else 'href="runs.html"', html)
            if fixed != html:
                _write(f, fixed)
    report.seconds = time.perf_counter() - started
    return report


def _write(path: Path, html: str) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
