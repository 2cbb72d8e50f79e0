"""Start a JupyterLab server that a program (a browser test) can drive reliably.

    with start_lab("build/lab-root") as lab:
        print(lab.url_for("notebook.ipynb"))      # http://127.0.0.1:PORT/lab/tree/notebook.ipynb?token=...

What makes it reliable (measured, see shared/notes/stack.md): a free port on 127.0.0.1 taken with
``--port-retries=0`` (no silent move to another port), a random token, ``expose_app_in_browser`` (the page's
``window.jupyterapp`` lets a test ask whether the kernel is idle), and an ``overrides.json`` that turns off
news and update checks, starts the notebook's kernel without asking, and renders every cell (no windowing:
cells off-screen exist in the page, so a test can find their outputs).
"""
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"

OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Lab:
    """A running JupyterLab: its url, token and process; `stop()` ends it (and its kernels)."""

    def __init__(self, process: subprocess.Popen, port: int, token: str, root: Path, log_path: Path):
        self.process, self.port, self.token, self.root, self.log_path = process, port, token, root, log_path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url_for(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20):
        """SIGTERM, then SIGKILL if the server has not ended within `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_lab(root, state_dir=None, startup_timeout: float = 120) -> Lab:
    """Start JupyterLab serving `root` and wait until its API answers; settings and logs go to `state_dir`
    (default: root/.lab-state). Raises RuntimeError with the server's log if it does not come up."""
    root = Path(root).resolve()
    state = Path(state_dir) if state_dir else root / ".lab-state"
    settings = state / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES, indent=2))
    port, token = free_port(), secrets.token_hex(16)
    log_path = state / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={HOST}", f"--port={port}",
               "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.app_settings_dir={settings}",
               f"--LabApp.user_settings_dir={state / 'user-settings'}",
               f"--LabApp.workspaces_dir={state / 'workspaces'}"]
    if os.geteuid() == 0:  # containers and CI machines often run as root; Jupyter refuses without this
        command.append("--allow-root")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(process, port, token, root, log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{lab.log()}")
        try:
            with urllib.request.urlopen(f"{lab.base_url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return lab
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    lab.stop()
    raise RuntimeError(f"JupyterLab did not answer on {lab.base_url} within {startup_timeout} s:\n{lab.log()}")


def main():
    """`python -m gfpgan_debug.lab [ROOT]`: the same server for a person (prints the url; Ctrl-C stops)."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks")
    lab = start_lab(root, state_dir=Path("build") / "lab-state")
    print(f"JupyterLab serving {root} at {lab.base_url}/lab?token={lab.token}  (Ctrl-C stops it)")
    try:
        lab.process.wait()
    except KeyboardInterrupt:
        lab.stop()


if __name__ == "__main__":
    main()
