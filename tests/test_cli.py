"""The gfpgan-debug command line, run as a real subprocess: verbs, exit codes, --json."""
import json
import subprocess
import sys

import torch

from gfpgan_debug.arch import GFPGANv1Clean

SMALL = dict(out_size=512, num_style_feat=128, channel_multiplier=1, decoder_load_path=None, fix_decoder=False,
             num_mlp=8, input_is_latent=True, different_w=True, narrow=0.125, sft_half=True)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "gfpgan_debug.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_weights_list_json_names_the_three_versions():
    result = cli("weights", "list", "--json")
    assert result.returncode == 0
    assert [row["version"] for row in json.loads(result.stdout)] == ["v1.2", "v1.3", "v1.4"]


def test_inspect_a_good_checkpoint_exits_0_with_config(tmp_path):
    torch.save({"params_ema": GFPGANv1Clean(**SMALL).state_dict()}, tmp_path / "c.pth")
    result = cli("weights", "inspect", tmp_path / "c.pth", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"]["narrow"] == 0.125 and data["report"]["fraction_loaded"] == 1.0


def test_inspect_a_bad_file_exits_2_with_one_line_and_no_traceback(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 1000)
    result = cli("weights", "inspect", tmp_path / "junk.pth")
    assert result.returncode == 2
    assert "junk.pth" in result.stderr and "Traceback" not in result.stderr


def test_inspect_a_partial_checkpoint_exits_1(tmp_path):
    state = GFPGANv1Clean(**SMALL).state_dict()
    state.pop("stylegan_decoder.to_rgb1.bias")
    torch.save({"params_ema": state}, tmp_path / "partial.pth")
    result = cli("weights", "inspect", tmp_path / "partial.pth")
    assert result.returncode == 1
    assert "1 missing" in result.stdout


def test_fetch_from_an_unreachable_mirror_exits_2_and_writes_nothing(tmp_path):
    result = cli("weights", "fetch", "v1.3", "--dest", tmp_path / "w", "--url", "http://127.0.0.1:9/x.pth")
    assert result.returncode == 2 and "could not download" in result.stderr
    assert not any((tmp_path / "w").glob("*.pth"))


def test_an_unknown_verb_exits_2():
    assert cli("frobnicate").returncode == 2
