"""Run model-written programs (HumanEval/MBPP completions + their tests) in an isolation sandbox, never in-process.

The boundary is `bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``), not Python. Each program runs
as ``python -I`` inside a fresh ``bwrap`` sandbox with:

- new PID, network, IPC, UTS (and, where the kernel has them, cgroup) namespaces: the program sees and can signal
  only its own processes, and has only a loopback interface (no network);
- a read-only view of the host's ``/`` (``--ro-bind / /``: nothing on the host can be written or deleted), a fresh
  ``/proc`` and a minimal ``/dev``; ``/tmp`` is a private, size-capped tmpfs that holds the program's work
  directory (its cwd and HOME), and ``/root``, ``/home`` and ``/run`` are hidden under empty tmpfs mounts (only
  the directories of the Python installation are bound back, read-only, when they live there);
- an unprivileged identity, uid/gid 65534 (nobody) with no supplementary groups and no capabilities, and
  ``no_new_privs`` (set by bwrap: set-uid programs do not elevate);
- ``--new-session`` (no access to the caller's terminal) and ``--die-with-parent``;
- resource limits: address space (memory), CPU time, file size, number of processes, no core dumps;
- a wall-clock timeout: output is read with a deadline, never waiting for end-of-file (a detached grandchild that
  holds the pipes cannot stall the caller), and on timeout bwrap is killed; its PID namespace dies with it (the
  namespace's init is killed by ``--die-with-parent``, and the kernel then kills every process in the namespace).
  The call returns within about ``timeout`` + 2 s. Only the last 64 KiB of stderr is kept; stdout is discarded.

**How the unprivileged identity is made.** When calibkit runs as a normal user, bwrap needs a user namespace, and
``--unshare-user --uid 65534 --gid 65534`` maps the sandbox's uid onto the caller's uid. When calibkit runs as
root (CI, containers), a user namespace would *not* help: bwrap can only map the sandbox uid onto the caller's,
i.e. onto host root, so every root-owned file (``/etc/shadow`` included) would still be readable through owner
permissions. As root, therefore, no user namespace is made; bwrap keeps only ``CAP_SETUID``/``CAP_SETGID``, and a
tiny launcher (the same interpreter, ``-I -S``) sets the resource limits and drops to the *host* uid/gid 65534
before it ``exec``s the program, which then has no capabilities and owns no file on the host. Because
``/root`` is mode 700 and the interpreter of a venv often lives under it (e.g. pyenv), the installation's
directories (``sys.prefix``, ``sys.base_prefix``, the real path of ``sys.executable``) are bound back read-only
into the tmpfs over ``/root`` (or ``/home``, ``/tmp``) with world-searchable parent directories.

**No weaker mode.** Whether bwrap works here is checked once per process (cached) by running a trivial program
through the full arrangement. Where ``bwrap`` is missing or does not work, code evaluation *refuses to run* with a
:class:`SandboxError` that says how to install it (``apt-get install bubblewrap``).

**Second layer.** A Python audit hook, installed at the top of the program file, refuses sockets, subprocesses,
``os.system``/``exec``/``fork``/``kill``, ``ctypes`` and ``shutil.rmtree``. It keeps careless code from doing
these things and gives a clear message; it is not the boundary (``_posixsubprocess`` raises no audit event, and
``sys.audit`` itself can be rebound). The hook uses only constants and its arguments, it is reachable by no
name, and replacing its ``__code__`` is refused, so the program cannot switch it off by rebinding a global.

The outcome is "passed" only if the program exits 0 within the time.
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from ..errors import CalibkitError

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install "
                "bubblewrap`) on a system that allows it to create namespaces")

_NOBODY = 65534
_WORKDIR = "/tmp/calibkit-sandbox"        # inside the sandbox, on its private tmpfs
_TMPFS_BYTES = 64 << 20                   # size cap of that tmpfs
_FILE_BYTES = 16 << 20                    # RLIMIT_FSIZE
_NPROC = 256                              # RLIMIT_NPROC
_STDERR_KEEP = 64 << 10                   # bytes of stderr kept (the tail)
_KILL_GRACE = 2.0                         # seconds allowed for the sandbox to die after the timeout
_HIDDEN = ("/root", "/home", "/run")      # covered by empty tmpfs mounts (and /tmp by the private one)

# The second layer, prepended to the program. The hook refers to no global and no mutable object: the blocked
# prefixes are constants of its code object, and replacing a function's ``__code__`` is itself refused.
_GUARD = r'''
def _calibkit_guard():
    import sys

    def hook(event, args):
        if event.startswith(("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork",
                             "os.forkpty", "os.spawn", "os.kill", "os.killpg", "ctypes.", "pty.",
                             "shutil.rmtree", "webbrowser.", "urllib.Request")) or (
                event == "object.__setattr__" and "__code__".__eq__(args[1]) is True):
            raise PermissionError("sandbox: " + event + " is not allowed")

    sys.addaudithook(hook)


_calibkit_guard()
del _calibkit_guard
'''

# Runs first inside the sandbox (as root only when calibkit runs as root): limits, then drop to nobody, then exec.
_LAUNCHER = r'''
import os, resource as r, sys
uid, cpu, mem, fsize, nproc = map(int, sys.argv[1:6])
for what, n in ((r.RLIMIT_CPU, cpu), (r.RLIMIT_AS, mem), (r.RLIMIT_FSIZE, fsize), (r.RLIMIT_CORE, 0)):
    r.setrlimit(what, (n, n))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise SystemExit("sandbox: could not drop privileges")
r.setrlimit(r.RLIMIT_NPROC, (nproc, nproc))
os.execv(sys.argv[6], sys.argv[6:])
'''


class SandboxError(CalibkitError):
    """Code evaluation cannot run because the isolation sandbox (bubblewrap) is missing or does not work."""


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | timeout
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _hidden() -> list[str]:
    return [h for h in _HIDDEN if os.path.isdir(h) and not os.path.islink(h)]


def _interpreter_binds() -> list[str]:
    """bwrap arguments that bind the Python installation back where it lies under a hidden directory."""
    hidden = (*_hidden(), "/tmp")
    paths = set()
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.abspath(sys.executable)), os.path.dirname(os.path.realpath(sys.executable))):
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if any(_under(q, h) for h in hidden) and os.path.isdir(q):
                paths.add(q)
    roots = [p for p in sorted(paths) if not any(p != o and _under(p, o) for o in paths)]
    args, made = [], set()
    for p in roots:
        top = next(h for h in hidden if _under(p, h))
        parts = p[len(top):].strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):  # parents, world-searchable (bwrap would make them 0700)
            d = top + "/" + "/".join(parts[:i])
            if d not in made:
                made.add(d)
                args += ["--perms", "0755", "--dir", d]
        args += ["--ro-bind", p, p]
    return args


def _command(bwrap: str, program_fd: int, seconds: float, memory_mb: int) -> list[str]:
    as_root = os.geteuid() == 0
    cmd = [bwrap,
           "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--hostname", "sandbox",
           "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
           "--perms", "1777", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp"]
    for h in _hidden():
        cmd += ["--tmpfs", h]
    cmd += _interpreter_binds()
    cmd += ["--perms", "0777", "--dir", _WORKDIR,
            "--perms", "0444", "--file", str(program_fd), _WORKDIR + "/program.py",
            "--chdir", _WORKDIR, "--clearenv"]
    for k, v in (("PATH", "/usr/bin:/bin"), ("HOME", _WORKDIR), ("TMPDIR", _WORKDIR), ("LANG", "C.UTF-8"),
                 ("PYTHONHASHSEED", "0"), ("PYTHONDONTWRITEBYTECODE", "1")):
        cmd += ["--setenv", k, v]
    if as_root:  # see the module docstring: no user namespace; the launcher drops to host uid 65534
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        uid = _NOBODY
    else:
        cmd += ["--unshare-user", "--uid", str(_NOBODY), "--gid", str(_NOBODY), "--disable-userns"]
        uid = -1
    exe = sys.executable
    cpu = int(seconds) + 1
    cmd += ["--", exe, "-I", "-S", "-c", _LAUNCHER, str(uid), str(cpu), str(memory_mb << 20), str(_FILE_BYTES),
            str(_NPROC), exe, "-I", "-B", "program.py"]
    return cmd


def _kill(proc: subprocess.Popen) -> None:
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _drain(sel: selectors.BaseSelector, stderr, err: bytearray, deadline: float) -> bool:
    """Read the pipes until both are at end-of-file (True) or ``deadline`` passes (False); keep stderr's tail."""
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for key, _ in sel.select(left):
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                sel.unregister(key.fileobj)
            elif key.fileobj is stderr:
                err += chunk
                del err[:-_STDERR_KEEP]
    return True


def _execute(bwrap: str, source: str, timeout: float, memory_mb: int) -> Outcome:
    fd = os.memfd_create("calibkit-program")
    try:
        data = memoryview(source.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        os.lseek(fd, 0, os.SEEK_SET)
        deadline = time.monotonic() + timeout
        proc = subprocess.Popen(_command(bwrap, fd, timeout, memory_mb), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(fd,),
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True)
    finally:
        os.close(fd)
    err = bytearray()
    timed_out = True
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        try:
            if _drain(sel, proc.stderr, err, deadline):
                proc.wait(max(0.0, deadline - time.monotonic()))
                timed_out = False
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.returncode is None:
                # bwrap dies at once; its namespace's init follows (--die-with-parent), and with it every
                # process in the namespace, which closes the pipes: wait for that, within a grace period
                _kill(proc)
                grace = time.monotonic() + _KILL_GRACE
                _drain(sel, proc.stderr, err, grace)
                try:
                    proc.wait(max(0.0, grace - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            proc.stdout.close()  # never wait past the deadline for end-of-file
            proc.stderr.close()
    if timed_out:
        return Outcome("timeout", f"no exit within {timeout:g} s")
    if proc.returncode == 0:
        return Outcome("passed")
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return Outcome("failed", tail[0][:300])


_probe_lock = threading.Lock()


@lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str]:
    """(bwrap's path, "") where the full sandbox runs a trivial program here, else (None, why not). Cached."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed or not on PATH"
    try:
        out = _execute(bwrap, "import sys\nassert sys.flags.isolated\n", 30.0, 1024)
    except OSError as e:
        return None, f"bubblewrap ({bwrap}) could not be started: {e}"
    if not out.passed:
        return None, f"bubblewrap ({bwrap}) does not work here: {out.detail or out.status}"
    return bwrap, ""


def sandbox_tool() -> str:
    """The path of the working ``bwrap``; raises :class:`SandboxError` (refusing to run code) where there is none."""
    with _probe_lock:
        bwrap, why = _probe()
    if bwrap is None:
        raise SandboxError(f"code evaluation refuses to run model-written programs without an isolation sandbox: "
                           f"{why}. To evaluate code, {INSTALL_HINT}.")
    return bwrap


def run_program(program: str, timeout: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run ``program`` (source text) in the sandbox; "passed" iff it exits 0 within ``timeout`` seconds.

    Raises :class:`SandboxError` where the sandbox (bubblewrap) is missing or does not work here.
    """
    return _execute(sandbox_tool(), _GUARD + "\n" + program + "\n", timeout, memory_mb)


def run_programs(programs: list[str], timeout: float = 10.0, memory_mb: int = 1024,
                 workers: int | None = None) -> list[Outcome]:
    sandbox_tool()  # refuse before starting any work
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
