"""lab: the JupyterLab helper the browser tests stand on (no browser needed here)."""
import json
import urllib.error
import urllib.request

import pytest

from gfpgan_debug.lab import OVERRIDES, start_lab


def status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def test_start_lab_serves_on_localhost_with_a_token_and_stop_ends_it(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    lab = start_lab(root, state_dir=tmp_path / "state")
    try:
        assert lab.base_url.startswith("http://127.0.0.1:")
        assert status(f"{lab.base_url}/api/status?token={lab.token}") == 200
        with pytest.raises(urllib.error.HTTPError) as refused:  # no token, no API
            status(f"{lab.base_url}/api/contents")
        assert refused.value.code == 403
        written = json.loads((tmp_path / "state" / "settings" / "overrides.json").read_text())
        assert written == OVERRIDES
        assert written["@jupyterlab/notebook-extension:tracker"]["autoStartDefaultKernel"] is True
    finally:
        lab.stop()
    assert lab.process.returncode is not None
    with pytest.raises(urllib.error.URLError):
        status(f"{lab.base_url}/api/status?token={lab.token}")
