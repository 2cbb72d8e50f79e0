"""The post's export script (both ways it could load nothing) and its fix, on the committed demo weights."""
import numpy as np
import torch

from gfpgan_debug import story
from gfpgan_debug.images import load_face
from gfpgan_debug.weights import DEMO_WEIGHTS, load_checkpoint


def test_the_whole_dict_script_loads_nothing_and_the_fix_loads_everything():
    broken, result = story.broken_model(DEMO_WEIGHTS, mode="whole_dict")
    fixed, report = story.fixed_model(DEMO_WEIGHTS)
    assert len(result.missing_keys) == 285 and result.unexpected_keys == ["params_ema"]
    assert report.complete and report.fraction_loaded == 1.0
    checkpoint = load_checkpoint(DEMO_WEIGHTS)
    assert torch.equal(fixed.conv_body_first.weight, checkpoint["conv_body_first.weight"])
    assert not torch.equal(broken.conv_body_first.weight, checkpoint["conv_body_first.weight"])


def test_renamed_keys_load_nothing_of_the_renamed_modules():
    _, result = story.broken_model(DEMO_WEIGHTS, mode="renamed_keys")
    assert all(k.startswith(("stylegan_decoder.", "conv_body_")) for k in result.missing_keys)
    assert any(k.startswith("decoder.") for k in result.unexpected_keys)


def test_the_broken_model_is_reproducible_and_its_output_is_not_the_fixed_one():
    x = load_face()
    a, _ = story.broken_model(DEMO_WEIGHTS)
    b, _ = story.broken_model(DEMO_WEIGHTS)
    fixed, _ = story.fixed_model(DEMO_WEIGHTS)
    with torch.no_grad():
        out_a = a(x, randomize_noise=False)[0]
        out_b = b(x, randomize_noise=False)[0]
        out_fixed = fixed(x, randomize_noise=False)[0]
    assert torch.equal(out_a, out_b)  # the seeded initialisation: the same wrong picture in every notebook
    # The demo output is a face (PSNR vs the input well above 20 dB); the broken one is a colour blob.
    mse = lambda p, q: float(((p - q) / 2).pow(2).mean())
    assert 10 * np.log10(1 / mse(out_fixed, x)) > 20
    assert 10 * np.log10(1 / mse(out_a, x)) < 12
