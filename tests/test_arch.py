"""GFPGANv1Clean: key compatibility with the official checkpoints, parity with upstream, TorchScript."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gfpgan_debug.arch import OFFICIAL_CONFIG, GFPGANv1Clean
from gfpgan_debug.compat import torch_deprecations_silenced
from gfpgan_debug.weights import fill_weights_

# A copy of shared/reference/gfpganv1_clean_512_state_dict.json: every key, shape and dtype of the official dict.
OFFICIAL_KEYS = Path(__file__).parent / "data" / "official_state_dict.json"
UPSTREAM = Path(__file__).parent / "data" / "upstream_reference.npz"

# Small configurations (the same ones tests/data/README.md says the upstream outputs were made with).
TINY = dict(out_size=64, num_style_feat=64, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
            num_mlp=8, input_is_latent=True, different_w=True, narrow=0.25, sft_half=True)
TINY_MLP = dict(TINY, input_is_latent=False, different_w=False, sft_half=False, out_size=128)


def filled(config, seed=7):
    return fill_weights_(GFPGANv1Clean(**config).eval(), seed=seed)


def upstream_input(size):
    """The input the upstream reference outputs were computed from (seeded, clamped to the model's range)."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(11)).clamp(-1, 1)


def reference_entries():
    return json.loads(OFFICIAL_KEYS.read_text())["entries"]


def test_official_config_state_dict_equals_the_official_key_list_in_order():
    model = GFPGANv1Clean(**OFFICIAL_CONFIG)
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    official = [(e["key"], e["shape"], e["dtype"]) for e in reference_entries()]
    assert len(ours) == 285
    assert ours == official


def test_official_config_counts_match_the_published_totals():
    model = GFPGANv1Clean(**OFFICIAL_CONFIG)
    assert sum(p.numel() for p in model.parameters()) == 86_444_252
    assert sum(b.numel() for b in model.buffers()) == 699_024


@pytest.mark.parametrize("tag, config", [("tiny", TINY), ("tiny_latent_mlp", TINY_MLP)])
def test_outputs_match_upstream_on_filled_weights(tag, config):
    reference = np.load(UPSTREAM)
    with torch.no_grad():
        image, out_rgbs = filled(config)(upstream_input(config["out_size"]), randomize_noise=False)
    # Same operations in the same order: only a different CPU's vector width could move the last bits.
    np.testing.assert_allclose(image.numpy(), reference[f"{tag}_image"], rtol=1e-5, atol=1e-5)
    for rgb in out_rgbs:
        np.testing.assert_allclose(rgb.numpy(), reference[f"{tag}_rgb_{rgb.shape[-1]}"], rtol=1e-5, atol=1e-5)


def test_official_config_matches_upstream_on_filled_weights():
    reference = np.load(UPSTREAM)
    with torch.no_grad():
        image, out_rgbs = filled(OFFICIAL_CONFIG)(upstream_input(512), randomize_noise=False)
    pooled = torch.nn.functional.avg_pool2d(image, 32).numpy()
    # Values reach ~20 after 14 modulated convs; 1e-4 relative allows for summation order on another CPU.
    np.testing.assert_allclose(pooled, reference["official_image_pool16"], rtol=1e-4, atol=1e-4)
    for rgb in out_rgbs[:4]:
        np.testing.assert_allclose(rgb.numpy(), reference[f"official_rgb_{rgb.shape[-1]}"], rtol=1e-5, atol=1e-5)


def test_out_rgbs_are_seven_maps_from_8_to_512():
    model = GFPGANv1Clean(**dict(TINY, out_size=512, narrow=0.125))
    with torch.no_grad():
        image, out_rgbs = model(torch.zeros(1, 3, 512, 512), randomize_noise=False)
    assert image.shape == (1, 3, 512, 512)
    assert [tuple(r.shape) for r in out_rgbs] == [(1, 3, s, s) for s in (8, 16, 32, 64, 128, 256, 512)]


def test_return_rgb_false_returns_no_maps_and_the_same_image():
    model = filled(TINY)
    x = upstream_input(64)
    with torch.no_grad():
        with_rgbs, _ = model(x, randomize_noise=False)
        without, out_rgbs = model(x, return_rgb=False, randomize_noise=False)
    assert out_rgbs == []
    assert torch.equal(with_rgbs, without)


def test_stored_noise_is_deterministic_and_fresh_noise_is_not():
    model = filled(TINY)  # noise strengths are non-zero once filled
    x = upstream_input(64)
    with torch.no_grad():
        a, b = model(x, randomize_noise=False)[0], model(x, randomize_noise=False)[0]
        c, d = model(x, randomize_noise=True)[0], model(x, randomize_noise=True)[0]
    assert torch.equal(a, b)
    assert not torch.equal(c, d)
    assert not torch.equal(a, c)


def test_fresh_noise_changes_nothing_while_noise_strengths_are_zero():
    model = GFPGANv1Clean(**TINY).eval()  # default init: every noise strength is exactly 0
    x = upstream_input(64)
    with torch.no_grad():
        assert torch.equal(model(x, randomize_noise=True)[0], model(x, randomize_noise=False)[0])


@pytest.mark.parametrize("batch", [1, 2])
def test_scripted_model_equals_eager_bit_for_bit(batch):
    model = filled(TINY)
    with torch_deprecations_silenced():
        scripted = torch.jit.script(model)
    x = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        eager_image, eager_rgbs = model(x, randomize_noise=False)
        script_image, script_rgbs = scripted(x, randomize_noise=False)
    assert torch.equal(eager_image, script_image)
    assert all(torch.equal(a, b) for a, b in zip(eager_rgbs, script_rgbs, strict=True))


def test_scripted_official_model_equals_eager_bit_for_bit():
    model = filled(OFFICIAL_CONFIG)
    with torch_deprecations_silenced():
        scripted = torch.jit.script(model)
    x = upstream_input(512)
    with torch.no_grad():
        eager_image, _ = model(x, randomize_noise=False)
        script_image, _ = scripted(x, randomize_noise=False)
    assert torch.equal(eager_image, script_image)


def test_batch_of_two_equals_two_batches_of_one():
    model = filled(TINY)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        both = model(x, randomize_noise=False)[0]
        one_by_one = torch.cat([model(x[i:i + 1], randomize_noise=False)[0] for i in range(2)])
    # The batch is folded into conv groups; grouped and single convolutions may sum in another order.
    torch.testing.assert_close(both, one_by_one, rtol=1e-5, atol=1e-5)


def test_scripted_model_survives_save_and_load(tmp_path):
    model = filled(TINY)
    with torch_deprecations_silenced():
        torch.jit.script(model).save(str(tmp_path / "m.pt"))
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = upstream_input(64)
    with torch.no_grad():
        assert torch.equal(model(x, randomize_noise=False)[0], loaded(x, randomize_noise=False)[0])


def test_fix_decoder_freezes_only_the_decoder():
    model = GFPGANv1Clean(**dict(TINY, fix_decoder=True))
    assert not any(p.requires_grad for p in model.stylegan_decoder.parameters())
    assert all(p.requires_grad for p in model.conv_body_first.parameters())
