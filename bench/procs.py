"""Child processes, measured: wall time, CPU seconds and peak RSS of exactly one child each.

`os.wait4` returns the rusage of the child it reaps, so CPU and ru_maxrss belong to that child
alone (RUSAGE_CHILDREN would mix in every other reaped child and only ever report the largest
peak). The harness itself stays small, because a child's ru_maxrss starts from its parent's
resident size at fork on Linux.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def compile_sources() -> None:
    """Byte-compile both contestants' code before any is timed, as installing a package does.

    An interpreter that finds no ``__pycache__`` compiles every module from source at each start
    and, with PYTHONDONTWRITEBYTECODE set (as on our CI machines), never keeps the result: ~0.1 s
    of CPU per allen-mirror process that an installed copy never pays.
    """
    for folder in ("crawler", "bench", "migrations"):
        compileall.compile_dir(str(REPO / folder), quiet=1)


class BenchError(RuntimeError):
    """A step of the benchmark could not run (not a slow result: a broken one)."""


@dataclass(frozen=True)
class Measured:
    """What one child process cost."""

    returncode: int
    wall: float  # seconds from spawn to reaped
    cpu: float  # user + system seconds, every thread of the child
    user: float  # the user-mode part of cpu
    maxrss_mb: float  # peak resident set size
    stdout: str
    stderr: str


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run_measured(
    argv: Sequence[str],
    *,
    logs: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    watch: Callable[[subprocess.Popen[bytes], float], bool] | None = None,
    poll: float = 0.01,
) -> Measured:
    """Run a child to completion under a deadline; stdout/stderr go to files under ``logs``.

    ``watch(process, started)`` (``started`` is the wall-clock ``time.time()`` of the spawn) is
    called every ``poll`` seconds while the child runs; when it returns True the child is sent
    SIGINT (a graceful stop) and then reaped as usual.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started_wall = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
        interrupted = False
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                elapsed = time.perf_counter() - started
                if elapsed > timeout:
                    raise BenchError(f"{' '.join(argv[:4])} ... did not finish in {timeout:.0f}s")
                if watch is not None and not interrupted and watch(process, started_wall):
                    process.send_signal(signal.SIGINT)
                    interrupted = True
                time.sleep(poll)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        returncode=process.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        user=usage.ru_utime,
        maxrss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        stdout=_read(out_path),
        stderr=_read(err_path),
    )


def crawler(*args: str) -> list[str]:
    """The real command line: ``python -m crawler ...``."""
    return [PYTHON, "-m", "crawler", *args]


class SimulatorProcess:
    """`python -m bench.server` as a child, driven over its stdin control line."""

    def __init__(
        self,
        *,
        logs: Path,
        latency_ms: float = 0.0,
        sections: int | None = None,
        extra_connectivity_datasets: int = 6,
        extra_ish_datasets: int = 2,
        image_scale: float = 1.0,
        cache_mb: int = 1024,
        start_timeout: float = 120.0,
    ) -> None:
        self.argv = [
            PYTHON,
            "-m",
            "bench.server",
            "--latency-ms",
            str(latency_ms),
            "--extra-connectivity-datasets",
            str(extra_connectivity_datasets),
            "--extra-ish-datasets",
            str(extra_ish_datasets),
            "--image-scale",
            str(image_scale),
            "--cache-mb",
            str(cache_mb),
        ]
        if sections is not None:
            self.argv += ["--sections", str(sections)]
        self.logs = logs
        self.start_timeout = start_timeout
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[bytes] | None = None

    def __enter__(self) -> SimulatorProcess:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._stderr = (self.logs / "simulator.stderr.txt").open("wb")
        self._process = subprocess.Popen(
            self.argv,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        line = self._next_line(self.start_timeout)
        prefix = "simulator listening on "
        if not line.startswith(prefix):
            self.__exit__(None, None, None)
            raise BenchError(f"simulator did not start: {line!r}")
        self.base_url = line[len(prefix) :].strip()
        return self

    def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"simulator gave no answer in {timeout:.0f}s") from None
        if line is None:
            raise BenchError(f"simulator exited; see {self.logs / 'simulator.stderr.txt'}")
        return line

    def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one control command and return its JSON answer."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._next_line(timeout))
        if "error" in answer:
            raise BenchError(f"simulator: {answer['error']}")
        return answer

    def set_latency(self, latency_ms: float) -> None:
        self.ask(f"latency {latency_ms}")

    def __exit__(self, *_exc: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()  # EOF: the server stops by itself
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class FirstRequest:
    """A `run_measured` watch: seconds from spawn to the simulator's first request per route.

    With ``stop_on`` set, it asks for a graceful stop (SIGINT) once that route has been seen, or
    once ``give_up`` seconds have passed without it.
    """

    def __init__(
        self, sim: SimulatorProcess, stop_on: str | None = None, give_up: float = 120.0
    ) -> None:
        self.sim = sim
        self.stop_on = stop_on
        self.give_up = give_up
        self.seconds: dict[str, float] = {}
        self._next_ask = 0.0

    def __call__(self, _process: subprocess.Popen[bytes], started: float) -> bool:
        now = time.time()
        if self.stop_on is not None and now - started > self.give_up:
            return True
        if now < self._next_ask:
            return False
        self._next_ask = now + 0.02
        for route, at in self.sim.ask("stats")["first"].items():
            self.seconds.setdefault(route, at - started)
        return self.stop_on is not None and self.stop_on in self.seconds
