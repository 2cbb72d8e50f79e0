"""netron_view: a real netron server on 127.0.0.1, reached over HTTP, stopped by one call or by exit."""
import datetime
import logging
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gfpgan_debug import netron_view
from gfpgan_debug.errors import ArtifactError
from gfpgan_debug.netron_view import show_in_netron, stop_all


def tiny_onnx(path):
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "conv.weight")
    node = helper.make_node("Conv", ["input", "conv.weight"], ["output"], name="conv")
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 4, 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture
def model_path(tmp_path):
    yield tiny_onnx(tmp_path / "tiny.onnx")
    stop_all()


def test_show_in_netron_serves_page_and_model_on_localhost_and_embeds_an_iframe(model_path):
    view = show_in_netron(model_path, height=420)
    assert view.address[0] == "127.0.0.1" and view.address[1] > 0
    assert b"netron" in get(view.url).lower()
    assert get(view.url + "data/tiny.onnx") == model_path.read_bytes()
    html = view._repr_html_()
    assert f'src="{view.url}"' in html and 'height="420"' in html


def test_stop_is_one_call_and_closes_the_port(model_path):
    view = show_in_netron(model_path)
    assert view.running
    view.stop()
    assert not view.running
    with pytest.raises(urllib.error.URLError):
        get(view.url)
    view.stop()  # a second stop is harmless


def test_a_second_view_stops_the_first(model_path):
    first = show_in_netron(model_path)
    second = show_in_netron(model_path)
    assert not first.running and second.running
    assert first.address != second.address


def test_show_in_netron_names_a_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing.onnx: no such file"):
        show_in_netron(tmp_path / "missing.onnx")


def test_show_in_netron_leaves_the_root_logger_alone(model_path):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    show_in_netron(model_path)
    assert root.handlers == handlers and root.level == level


def test_the_server_ends_with_the_process_that_started_it(model_path):
    script = ("import sys; from gfpgan_debug.netron_view import show_in_netron; "
              f"print(show_in_netron({str(model_path)!r}).url, flush=True)")
    # the child exits right after printing: it must not hang on the server thread
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError):
        get(url)


def test_build_age_is_counted_from_the_date_in_netrons_page():
    page = '<meta name="version" content="9.3.3">\n<meta name="date" content="2026-10-23 19:50:08">'
    assert netron_view.build_age_days(page, today=datetime.date(2026, 11, 26)) == 34
    assert netron_view.build_age_days(page, today=datetime.date(2027, 4, 21)) == 180
    assert netron_view.build_age_days("<html></html>") == 0.0


def test_the_installed_netron_carries_a_build_date():
    # if a netron release drops the meta tag, the age warning (and the browser test's routing) needs a look
    assert netron_view.build_age_days() > 0
