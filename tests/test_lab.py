"""`make lab`: JupyterLab on notebooks/ with the project's environment as the kernel.

Starts `jupyter lab` headless on 127.0.0.1 (random port and token, Jupyter's per-user state in a temporary
folder), then checks through its REST API that the numbered notebooks are listed and that the notebooks' kernel
starts in this environment, and finally opens 01_profiles in headless Chromium and looks for its rendered title.
"""

import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NUMBERED = ["01_profiles.ipynb", "02_prune.ipynb", "03_eval.ipynb", "04_correlations.ipynb", "05_igsp.ipynb"]
STARTUP_S = 60  # JupyterLab up and answering /api/status
KERNEL_S = 60  # kernel started and the code executed
BROWSER_TRIES = (30_000, 60_000)  # Chromium's virtual time budgets (ms), the second only if the first is short


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port, token, proc, log):
        self.port, self.token, self.proc, self.log = port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, method="GET", body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def log_tail(self, n=3000):
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.fail(f"no {jupyter}: jupyterlab is a project dependency (make setup)")
    state = tmp_path_factory.mktemp("jupyter")
    env = dict(os.environ)
    # Jupyter's per-user files (config, runtime, settings, workspaces, notebook signatures) go to a temporary
    # folder: the test neither reads a developer's settings nor leaves anything in their home.
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                     ("IPYTHONDIR", "ipython")]:
        env[var] = str(state / sub)
    env["JUPYTER_PREFER_ENV_PATH"] = "1"  # as `make lab`: this environment's kernelspecs come first
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--port-retries=0",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={NOTEBOOKS}",
           # opening a notebook writes a checkpoint: keep it out of notebooks/
           f"--FileCheckpoints.checkpoint_dir={state / 'checkpoints'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = state / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Lab(port, token, proc, log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab not up after {STARTUP_S} s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        try:  # kernels first (the one the browser opened too), then the server
            for k in server.api("/api/kernels", timeout=5):
                server.api(f"/api/kernels/{k['id']}", method="DELETE", timeout=10)
        except Exception:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and what it started
                proc.wait(timeout=10)


def test_lab_lists_the_notebooks(lab):
    listing = lab.api("/api/contents/")
    assert listing["type"] == "directory"
    names = {item["name"]: item["type"] for item in listing["content"]}
    for nb in NUMBERED:
        assert names.get(nb) == "notebook", f"{nb} not listed as a notebook: {sorted(names)}"
    # and one opens through the API as a notebook with its cells
    model = lab.api(f"/api/contents/{NUMBERED[0]}")
    assert model["type"] == "notebook" and model["content"]["cells"]


def _execute(lab, kernel_id, code, timeout):
    import websocket  # websocket-client (test extra)

    ws = websocket.create_connection(f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {lab.token}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "channel": "shell",
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, errors, deadline = [], [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content.get("execution_state") == "idle":
                return "".join(stdout), errors
        raise TimeoutError(f"no reply from the kernel within {timeout} s")
    finally:
        ws.close()


def test_notebook_kernel_is_the_project_environment(lab):
    kernel_name = json.loads((NOTEBOOKS / NUMBERED[0]).read_text())["metadata"]["kernelspec"]["name"]
    specs = lab.api("/api/kernelspecs")
    assert kernel_name in specs["kernelspecs"], f"the notebooks' kernel {kernel_name!r} is not offered: {specs}"
    kernel = lab.api("/api/kernels", method="POST", body={"name": kernel_name}, timeout=KERNEL_S)
    try:
        out, errors = _execute(lab, kernel["id"], "import json, sys, calibkit\n"
                               "print(json.dumps([sys.executable, sys.prefix, calibkit.__file__]))", KERNEL_S)
        assert not errors, f"kernel {kernel_name!r}: {errors}\n{lab.log_tail()}"
        executable, prefix, package = json.loads(out.strip().splitlines()[-1])
        assert os.path.realpath(prefix) == os.path.realpath(sys.prefix), \
            f"kernel {kernel_name!r} runs {executable} (prefix {prefix}), not this environment ({sys.prefix})"
        assert Path(package).resolve().parent == (ROOT / "calibkit").resolve()
    finally:
        lab.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=10)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _notebook_title(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+?)\s*$", "".join(cell["source"]), re.M)
            if m:
                return m.group(1)
    raise AssertionError(f"{path.name} has no markdown heading")


def _rendered_headings(dom):
    """Text of the <h1> elements of the DOM: rendered markdown (the editor shows the source as spans)."""
    return [html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in re.findall(r"<h1[^>]*>(.*?)</h1>", dom, re.S)]


def test_browser_renders_a_notebook(lab, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH: `make browser-tool` installs Debian's package (as root)")
    title = _notebook_title(NOTEBOOKS / NUMBERED[0])
    url = f"{lab.base}/lab/tree/{NUMBERED[0]}?token={lab.token}"
    headings = []
    for budget in BROWSER_TRIES:
        r = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--no-first-run", "--no-default-browser-check", f"--user-data-dir={tmp_path / 'chromium'}",
                            "--window-size=1280,1024", f"--virtual-time-budget={budget}", "--dump-dom", url],
                           capture_output=True, text=True, timeout=budget / 1000 + 60, stdin=subprocess.DEVNULL)
        headings = _rendered_headings(r.stdout)
        if any(title in h for h in headings):
            return
    pytest.fail(f"title {title!r} not rendered in {url.split('?')[0]}; headings: {headings[:10]}; "
                f"chromium rc {r.returncode}: {r.stderr[-1500:]}")
