import math
import os

import pytest
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
