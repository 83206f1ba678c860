"""Pieces shared by ``scripts/load-test`` modes: the server under test and small helpers.

Imported by the load-test script (scripts/ is put on ``sys.path`` by it); not a package module.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil

FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", "/work/shared/fixtures")) / "generated"
CAPTURES = {"coinbase": "coinbase-clean", "kraken": "kraken-clean",
            "binanceus": "binanceus-clean"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``alphapulse-server`` as a child process pointed at the replay URLs."""

    def __init__(self, urls: dict[str, str], rest_url: str, shm: str, name: str,
                 extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.name, self.shm = name, shm
        args = [sys.executable, "-m", "alphapulse.server.cli", "--exchanges", ",".join(urls),
                "--symbols", "BTC-USD", "--port", str(self.port), "--shm-dir", shm,
                "--name", name, "--log-level", "warning",
                "--binanceus-rest-url", rest_url, *(extra or [])]
        for exchange, url in urls.items():
            args += [f"--{exchange}-ws-url", url]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)

    def processes(self) -> list[psutil.Process]:
        """The server and its children (the collector process in ``--processes 2``)."""
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self.processes():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
