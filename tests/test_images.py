"""Reading images with clear errors, and GFPGAN's pre- and post-processing."""
import cv2
import numpy as np
import pytest
import torch

from gfpgan_debug import images
from gfpgan_debug.errors import ImageError


def test_the_data_face_is_a_512_square_colour_image():
    face = images.read_image(images.FACE_PATH)
    assert face.shape == (512, 512, 3) and face.dtype == np.uint8


def test_preprocess_equals_the_original_posts_basicsr_pipeline():
    from basicsr.utils import img2tensor  # works because importing gfpgan_debug installed the alias
    from torchvision.transforms.functional import normalize

    raw = cv2.imread(str(images.FACE_PATH))
    raw = cv2.resize(raw, (512, 512))
    expected = img2tensor(raw / 255.0, bgr2rgb=True, float32=True)
    normalize(expected, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
    ours = images.load_face()
    assert ours.shape == (1, 3, 512, 512) and ours.dtype == torch.float32
    # basicsr divides in float64 then casts; /255 in float32 lands on the same float32 for all 256 levels.
    assert torch.equal(ours, expected.unsqueeze(0))


def test_preprocess_maps_pixels_to_minus_one_one_in_rgb_order():
    bgr = np.zeros((512, 512, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR
    x = images.preprocess(bgr)
    assert x[0, 2].eq(1).all() and x[0, 0].eq(-1).all() and x[0, 1].eq(-1).all()


def test_postprocess_inverts_preprocess_exactly_for_8_bit_images():
    face = images.read_image(images.FACE_PATH)
    assert np.array_equal(images.postprocess(images.preprocess(face)), face)


def test_postprocess_clamps_out_of_range_values():
    out = images.postprocess(torch.tensor([-3.0, 0.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2))
    assert out[0, 0].tolist() == [255, 128, 0]  # BGR of RGB (-3 → 0, 0 → 128, 3 → 255)


def test_fingerprint_changes_when_one_value_changes():
    x = images.load_face()
    y = x.clone()
    y[0, 0, 0, 0] += 1e-6
    assert images.fingerprint(x).sha256 != images.fingerprint(y).sha256
    assert images.fingerprint(x).sha256 == images.fingerprint(x.clone()).sha256


@pytest.mark.parametrize("name, content, problem", [
    ("missing.png", None, "no such file"),
    ("empty.png", b"", "the file is empty"),
    ("notes.png", b"just some text, not pixels\n" * 10, "not an image OpenCV can decode"),
])
def test_unreadable_files_get_errors_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=problem) as info:
        images.read_image(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="not a file"):
        images.read_image(tmp_path)


def test_gray_rgba_and_16_bit_images_become_8_bit_bgr(tmp_path):
    gray = np.full((20, 30), 100, np.uint8)
    bgra = np.dstack([np.full((20, 30, 3), 50, np.uint8), np.full((20, 30), 7, np.uint8)])
    deep = np.full((20, 30, 3), 65535, np.uint16)
    for name, array in [("g.png", gray), ("a.png", bgra), ("d.png", deep)]:
        cv2.imwrite(str(tmp_path / name), array)
        image = images.read_image(tmp_path / name)
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8, name
    assert images.read_image(tmp_path / "d.png").max() == 255
    assert images.read_image(tmp_path / "a.png")[0, 0].tolist() == [50, 50, 50]


def test_a_one_pixel_image_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="too small"):
        images.read_image(tmp_path / "dot.png")


def test_a_non_square_image_is_resized_to_the_model_size():
    assert images.preprocess(np.zeros((300, 200, 3), np.uint8)).shape == (1, 3, 512, 512)


def test_a_huge_png_is_refused_before_decoding(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((300, 300, 3), np.uint8))
    monkeypatch.setattr(images, "MAX_PIXELS", 300 * 300 - 1)
    with pytest.raises(ImageError, match="300x300 pixels is more than"):
        images.read_image(tmp_path / "big.png")


def test_the_astronaut_crop_reproduces_the_committed_face():
    committed = images.read_image(images.FACE_PATH)
    # The Haar cascade and bicubic resize are deterministic; PNG is lossless.
    assert np.array_equal(images.astronaut_face(), committed)
