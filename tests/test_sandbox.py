import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from calibkit.errors import CalibkitError
from calibkit.eval import sandbox
from calibkit.eval.sandbox import pass_at_k, run_program, run_programs


def test_outcomes_pass_fail_timeout():
    assert run_program("assert sorted([3, 1]) == [1, 3]").passed
    out = run_program("assert 1 + 1 == 3")
    assert out.status == "failed" and "AssertionError" in out.detail
    assert run_program("while True:\n    pass", timeout=1.5).status == "timeout"
    assert [o.status for o in run_programs(["pass", "raise SystemExit(1)"])] == ["passed", "failed"]


@pytest.mark.parametrize("code, event", [
    ("import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)", "socket"),
    ("import subprocess; subprocess.run(['true'])", "subprocess.Popen"),
    ("import os; os.system('true')", "os.system"),
    ("import ctypes; ctypes.CDLL(None)", "ctypes"),
])
def test_guard_refuses_network_processes_and_ctypes(code, event):
    out = run_program(code)
    assert out.status == "failed" and "sandbox:" in out.detail and event in out.detail


def test_limits_memory_and_isolation(tmp_path):
    assert run_program("x = bytearray(4 << 30)", memory_mb=512).status == "failed"  # MemoryError
    # runs in its own temp dir, which is removed; it cannot see the caller's cwd files by relative path
    marker = tmp_path / "marker.txt"
    marker.write_text("x")
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert run_program("open('marker.txt')").status == "failed"
    finally:
        os.chdir(here)
    assert run_program("import os; assert os.environ.get('HF_TOKEN') is None and 'sandbox' in os.getcwd()").passed


def test_pass_at_k_matches_the_combinatorial_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 1), (5, 5, 2), (7, 6, 3)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


# --- isolation (bubblewrap) -------------------------------------------------------------------------------------

def _processes_with(marker: str) -> list[int]:
    """Host PIDs whose command line contains ``marker`` (zombies have an empty one)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


_DETACHED_SLEEP = """
import subprocess, sys
sys.audit = lambda *a: None  # subprocess asks sys.audit, so the audit hook never hears of this Popen
subprocess.Popen(["sleep", "60", "{marker}"], start_new_session=True)  # detached, holds stdout/stderr
"""


@pytest.mark.parametrize("then, status, seconds", [
    ("import time; time.sleep(60)", "timeout", 2 + 2),  # timeout, with the grandchild holding the pipes
    ("pass", "passed", 2),                              # the program exits; the grandchild must not stall us
])
def test_detached_grandchildren_neither_stall_nor_survive(then, status, seconds):
    marker = f"0.000{os.getpid()}{time.monotonic_ns() % 10**6}"  # `sleep` sums its arguments: a harmless marker
    t0 = time.monotonic()
    out = run_program(_DETACHED_SLEEP.format(marker=marker) + then, timeout=2)
    elapsed = time.monotonic() - t0
    assert out.status == status, out
    assert elapsed < seconds, elapsed
    for _ in range(20):  # the sandbox's PID namespace is gone by now; allow the kernel a moment to reap
        if not _processes_with(marker):
            break
        time.sleep(0.05)
    assert not _processes_with(marker)


def test_the_audit_hook_cannot_be_switched_off():
    # rebinding the old global no longer matters: the hook reads only its own constants
    out = run_program("_BLOCKED = ('x',)\nimport os\nos.kill(os.getpid(), 0)")
    assert out.status == "failed" and "sandbox: os.kill" in out.detail
    # nor can its code be replaced
    out = run_program("import gc\n"
                      "hook, = [f for f in gc.get_objects()\n"
                      "         if type(f).__name__ == 'function' and f.__name__ == 'hook']\n"
                      "hook.__code__ = (lambda event, args: None).__code__\n")
    assert out.status == "failed" and "sandbox: object.__setattr__" in out.detail


_ESCAPES = """
import os, socket
attempts = {{
    "write new file": lambda: open({new!r}, "w").write("x"),
    "overwrite file": lambda: open({victim!r}, "w").write("pwned"),
    "delete file": lambda: os.remove({victim!r}),
    "read secret": lambda: open({secret!r}).read(),
    "signal the test": lambda: os.kill({pytest_pid}, 0),
    "see the test": lambda: os.stat("/proc/{pytest_pid}"),
    "network": lambda: socket.create_connection(("10.255.255.1", 80), timeout=1),
}}
if {check_shadow}:
    attempts["read /etc/shadow"] = lambda: open("/etc/shadow").read()
escaped = []
for name, attempt in attempts.items():
    try:
        attempt()
        escaped.append(name)
    except OSError:
        pass
if os.getpid() > 10:  # a fresh PID namespace numbers the program among its first processes
    escaped.append("host PID namespace")
raise SystemExit("ESCAPED: " + ", ".join(escaped) if escaped else 0)
"""


def _escape_program(base, pytest_pid):
    victim, secret = base / "victim.txt", base / "secret.txt"
    victim.write_text("original")
    victim.chmod(0o666)
    secret.write_text("host secret")
    secret.chmod(0o600)
    base.chmod(0o777)  # only the sandbox (read-only root, other uid), not permissions, may stop the writes
    return _ESCAPES.format(new=str(base / "new.txt"), victim=str(victim), secret=str(secret), pytest_pid=pytest_pid,
                           check_shadow=os.geteuid() == 0 and os.path.exists("/etc/shadow"))


def test_the_sandbox_holds_without_the_audit_hook(tmp_path, monkeypatch):
    """With the second layer switched off, the program still cannot touch host files, processes or the network."""
    monkeypatch.setattr(sandbox, "_GUARD", "")
    bases = [tmp_path]  # /tmp: the sandbox has its own
    if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK):
        bases.append(Path(tempfile.mkdtemp(prefix="calibkit-test-", dir="/var/tmp")))  # visible, read-only inside
    try:
        for base in bases:
            out = run_program(_escape_program(base, os.getpid()), timeout=5)
            assert out.passed, (base, out)
            assert (base / "victim.txt").read_text() == "original"
            assert not (base / "new.txt").exists()
    finally:
        for base in bases[1:]:
            shutil.rmtree(base)


def test_refuses_to_run_without_bubblewrap(monkeypatch):
    def refused(which):
        sandbox._probe.cache_clear()
        monkeypatch.setattr(sandbox.shutil, "which", which)
        with pytest.raises(sandbox.SandboxError, match=r"refuses.*apt-get install bubblewrap") as e:
            run_program("pass")
        assert isinstance(e.value, CalibkitError)
        with pytest.raises(sandbox.SandboxError):
            run_programs(["pass"])
        return str(e.value)

    try:
        assert "not installed" in refused(lambda name, *a, **k: None)
        assert "does not work here" in refused(lambda name, *a, **k: "/bin/false")  # installed but failing
    finally:
        monkeypatch.undo()
        sandbox._probe.cache_clear()
    assert run_program("pass").passed
