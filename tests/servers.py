"""Real servers for the tests of real SDKs: PostgreSQL and redis-server, started from this
machine's binaries on 127.0.0.1 in a temporary directory, known to be ready when they say so
in their log (never after a sleep), and stopped by PID.

- The fixtures of ``test_sync_real_servers.py`` use the servers named by
  ``BLOCKON_TEST_POSTGRES`` (a DSN) and ``BLOCKON_TEST_REDIS`` (a URL) when those are set, and
  otherwise start their own with ``start_postgres`` and ``start_redis``.
- ``python3 tests/servers.py`` (what ``.ci/run`` does) starts both, prints one line of shell
  assignments (the two addresses, and the servers' PIDs as ``BLOCKON_SERVER_PIDS``), then
  stops them when it is terminated (SIGTERM, SIGINT) or its standard input closes;
  ``python3 tests/servers.py --missing`` prints the Debian packages of those not installed.

PostgreSQL refuses to run as root; as root, it runs as the ``postgres`` user that Debian's
package makes (else ``nobody``), in a directory that user owns.

Standard library only: ``.ci/run`` runs this before the virtualenv exists.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

#: Seconds a server may take to start or stop: a guard against hangs only.
STARTUP = 120.0

POSTGRES_ENV = "BLOCKON_TEST_POSTGRES"
REDIS_ENV = "BLOCKON_TEST_REDIS"


class ServerError(RuntimeError):
    """A server did not start; the message has its output."""


class Server:
    """A server process started here, its address, and the directory it lives in."""

    def __init__(
        self, name: str, url: str, process: subprocess.Popen[str], workdir: Path, stop_signal: int
    ) -> None:
        self.name = name
        self.url = url
        self.process = process
        self.workdir = workdir
        self.stop_signal = stop_signal
        #: The thread reading the server's output, to its end.
        self.reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Stop the server by its PID (killed if it does not stop in time) and remove its
        directory."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(self.stop_signal)
                try:
                    self.process.wait(STARTUP)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(STARTUP)
            if self.reader is not None:
                self.reader.join(STARTUP)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            shutil.rmtree(self.workdir, ignore_errors=True)


# --- finding the binaries -------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The directory of PostgreSQL's ``initdb`` and ``postgres``: on PATH, or in Debian's
    layout, which keeps them out of PATH, one directory per major version (the newest)."""
    found = shutil.which("initdb")
    if found and (Path(found).parent / "postgres").exists():
        return Path(found).parent
    versions = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    versions = [d for d in versions if (d / "postgres").exists() and d.parent.name.isdigit()]
    return max(versions, key=lambda d: int(d.parent.name)) if versions else None


def redis_server() -> str | None:
    return shutil.which("redis-server")


# --- starting them --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The user to run PostgreSQL as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ServerError("running as root, and there is no postgres or nobody user to run PostgreSQL")


def _as(user: str | None) -> dict[str, Any]:
    """Popen's arguments to run as ``user`` (its own group, no others); none for this one."""
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


def _start(
    name: str,
    argv: list[str],
    ready: re.Pattern[str],
    user: str | None,
    workdir: Path,
    url: str,
    stop_signal: int,
) -> Server:
    """Start ``argv`` and wait until a line of its output matches ``ready``. Its output is
    read to the end by a thread (a full pipe would stall the server)."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        **_as(user),
        start_new_session=True,  # Ctrl-C in the terminal reaches the tests, not the server
    )
    server = Server(name, url, process, workdir, stop_signal)
    lines: list[str] = []
    is_ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if ready.search(line):
                is_ready.set()
        is_ready.set()  # the server exited: stop waiting

    server.reader = threading.Thread(target=read, name=f"{name}-output", daemon=True)
    server.reader.start()
    if not is_ready.wait(STARTUP) or process.poll() is not None:
        server.stop()
        raise ServerError(f"{name} did not start ({' '.join(argv)}):\n{''.join(lines)}")
    return server


def _workdir(name: str, owner: str | None) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix=f"blockon-{name}-"))
    if owner is not None:
        shutil.chown(workdir, owner, owner)
    return workdir


def start_postgres(bindir: Path) -> Server:
    """A new cluster (superuser ``postgres``, trust authentication) served on 127.0.0.1."""
    user = _server_user()
    workdir = _workdir("postgres", user)
    data = workdir / "data"
    options = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
    initdb = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), *options, "--no-instructions"],
        capture_output=True,
        text=True,
        **_as(user),
        timeout=STARTUP,
        check=False,
    )
    if initdb.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServerError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    port = free_port()
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    for setting in (
        "listen_addresses=127.0.0.1",
        f"unix_socket_directories={workdir}",
        "fsync=off",
        "max_connections=60",
    ):
        argv += ["-c", setting]
    ready = re.compile(r"database system is ready to accept connections")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
    return _start("postgres", argv, ready, user, workdir, url, signal.SIGINT)


def start_redis(binary: str) -> Server:
    """A redis-server on 127.0.0.1 that keeps nothing on disk."""
    workdir = _workdir("redis", None)
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
    ready = re.compile(r"Ready to accept connections")
    return _start(
        "redis", argv, ready, None, workdir, f"redis://127.0.0.1:{port}/0", signal.SIGTERM
    )


# --- as a program, for .ci/run --------------------------------------------------------------


def missing_packages() -> list[str]:
    """Debian's packages of the servers that are not installed."""
    found = {"postgresql": postgres_bindir(), "redis-server": redis_server()}
    return [package for package, where in found.items() if where is None]


def _serve() -> None:
    if missing_packages():
        raise SystemExit(f"tests/servers.py: not installed: {' '.join(missing_packages())}")
    bindir, redis = postgres_bindir(), redis_server()
    assert bindir is not None and redis is not None
    servers: list[Server] = []

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        servers.append(start_postgres(bindir))
        servers.append(start_redis(redis))
        pids = " ".join(str(s.pid) for s in servers)
        print(
            f"{POSTGRES_ENV}={servers[0].url} {REDIS_ENV}={servers[1].url} "
            f'BLOCKON_SERVER_PIDS="{pids}"',
            flush=True,
        )
        sys.stdin.read()  # until the parent goes away
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["--missing"]:
        print(" ".join(missing_packages()))
    else:
        _serve()
