"""Run model-written programs (HumanEval/MBPP completions + their tests) outside the calibkit process.

Each program runs in its own ``python -I`` subprocess, in a fresh temporary directory that is deleted afterwards,
with:

- a wall-clock timeout (the whole process group is killed) and an equal CPU-time limit;
- resource limits: address space (memory), file size, number of processes, no core dumps;
- no network: a new, empty network namespace (``unshare --net``) where the system allows it, and in every case a
  Python audit hook installed before the program runs that refuses sockets, subprocesses, ``os.system``/``exec``/
  ``fork`` and ``ctypes`` (audit hooks cannot be removed from Python code);
- a minimal environment (no proxies, no tokens, HOME = the temp dir).

Never ``exec`` generated code in-process. The outcome is "passed" only if the process exits 0 within the time.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

_GUARD = r'''
import sys
_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty",
            "os.spawn", "os.kill", "os.killpg", "ctypes.", "pty.", "shutil.rmtree", "webbrowser.", "urllib.Request")
def _guard(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
sys.addaudithook(_guard)
del _guard
'''


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | timeout
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@lru_cache(maxsize=1)
def network_isolation() -> list[str]:
    """The command prefix that gives a child an empty network namespace here, or [] where none works."""
    exe = shutil.which("unshare")
    if exe is None:
        return []
    for prefix in ([exe, "--net"], [exe, "--net", "--map-root-user"]):
        try:
            if subprocess.run(prefix + ["true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


def _limits(seconds: float, memory_mb: int):
    def apply():
        import resource

        os.setsid()
        cpu = int(seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))
    return apply


def run_program(program: str, timeout: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run ``program`` (source text) in the sandbox; "passed" iff it exits 0 within ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="calibkit-sandbox-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + program + "\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        cmd = network_isolation() + [sys.executable, "-I", "-B", path]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_limits(timeout, memory_mb))
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return Outcome("timeout", f"no exit within {timeout:g} s")
        if proc.returncode == 0:
            return Outcome("passed")
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return Outcome("failed", tail[0][:300])


def run_programs(programs: list[str], timeout: float = 10.0, memory_mb: int = 1024,
                 workers: int | None = None) -> list[Outcome]:
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout, memory_mb), programs))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al., 2021): 1 − C(n−c, k)/C(n, k)."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
