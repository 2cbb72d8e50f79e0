"""Images in and out of the model: reading with clear errors, the face crop, GFPGAN's pre- and post-processing.

The preprocessing is the one upstream inference uses and the original post copied (OpenCV BGR uint8 →
resize to 512 → /255 → BGR to RGB → HWC to CHW float32 → normalise with mean 0.5, std 0.5 → batch axis), so
the model sees values in [-1, 1], RGB, shape (1, 3, 512, 512).
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from gfpgan_debug.errors import ImageError

MODEL_SIZE = 512
MAX_PIXELS = 64_000_000  # larger files are refused before decoding (header only): about 192 MB as 8-bit BGR
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
FACE_PATH = DATA_DIR / "faces" / "astronaut.png"


def read_image(path) -> np.ndarray:
    """Read an image file as 8-bit BGR (H, W, 3), like ``cv2.imread``, but never return None.

    Grayscale is expanded to three channels, an alpha channel is dropped, 16-bit is scaled to 8-bit.
    Memory is bounded: an image of more than ``MAX_PIXELS`` pixels is refused from its header, before any
    pixel is decoded (a 20-byte PNG or JPEG header can claim gigapixels). Any size up to that is read whole;
    ``preprocess`` then resizes it to the model's 512 x 512.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: the file is empty")
    header_ok, width, height = _peek_size(data)
    if header_ok and width * height > MAX_PIXELS:
        raise ImageError(f"{path}: {width}x{height} pixels is more than the {MAX_PIXELS:,} this tool reads")
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # a damaged file is reported once, below, not by libpng too
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # OpenCV's own size check (CV_IO_MAX_IMAGE_PIXELS) and some decoders raise
        raise ImageError(f"{path}: OpenCV refused to decode it ({str(error).strip().splitlines()[-1][:160]})") from None
    finally:
        logging.setLogLevel(level)
    if image is None:
        raise ImageError(f"{path}: not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...)")
    return to_bgr8(image, path)


def _peek_size(data: np.ndarray):
    """Width and height from the file's header, without decoding pixels: PNG read here, every other format
    Pillow knows (JPEG, BMP, TIFF, WebP, GIF, ...) by its format plugins, which parse only the header.
    (False, 0, 0) when neither recognises it; OpenCV's own limit (2**30 pixels) then still applies."""
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.size >= 24:
        width = int.from_bytes(data[16:20].tobytes(), "big")
        height = int.from_bytes(data[20:24].tobytes(), "big")
        return True, width, height
    import io
    import warnings

    from PIL import Image

    # Pillow's plugin registry (what Image.open walks), used directly: Image.open would refuse a header over
    # its own bomb limit with its own message before we could read the size and give ours.
    Image.init()
    prefix, stream = data[:16].tobytes(), io.BytesIO(data.tobytes())
    for name in Image.ID:
        factory, accepts = Image.OPEN[name]
        try:
            verdict = accepts(prefix) if accepts is not None else True
            if not verdict or isinstance(verdict, str):  # not this format (a string says why not)
                continue
            stream.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata (EXIF): not our question
                width, height = factory(stream, "").size
        except Exception:  # a short or damaged header: let the next plugin, or OpenCV, decide
            continue
        return True, int(width), int(height)
    return False, 0, 0


def to_bgr8(image: np.ndarray, source="image") -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bit) as 8-bit 3-channel BGR."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{source}: pixel type {image.dtype} is not supported (8 or 16-bit integers only)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageError(f"{source}: unexpected shape {image.shape}")
    if min(image.shape[:2]) < 2:
        raise ImageError(f"{source}: {image.shape[1]}x{image.shape[0]} pixels is too small to be a face")
    return np.ascontiguousarray(image)


def preprocess(image_bgr: np.ndarray, size: int = MODEL_SIZE) -> torch.Tensor:
    """8-bit BGR (H, W, 3) → float32 RGB tensor (1, 3, size, size) in [-1, 1], as upstream inference does.

    A non-square image is resized (squashed) to size x size with bilinear interpolation, as the post's
    ``cv2.resize(img, (512, 512))`` did; crop it first (``crop_face``) to keep its proportions.
    """
    image_bgr = to_bgr8(image_bgr)
    if image_bgr.shape[:2] != (size, size):
        image_bgr = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR)
    rgb = image_bgr[:, :, ::-1].astype(np.float32) / 255.0
    chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return ((chw - 0.5) / 0.5).unsqueeze(0)


def postprocess(output: torch.Tensor) -> np.ndarray:
    """Model output (1, 3, H, W) or (3, H, W) in [-1, 1] RGB → 8-bit BGR (H, W, 3), as upstream does."""
    output = torch.as_tensor(output).detach().float().cpu()
    if output.dim() == 4:
        output = output[0]
    rgb = ((output.clamp(-1, 1) + 1) / 2 * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[:, :, ::-1])


def load_face(path=None, size: int = MODEL_SIZE) -> torch.Tensor:
    """The model input for a face file (default: the project's astronaut face)."""
    return preprocess(read_image(path or FACE_PATH), size)


@dataclass
class Fingerprint:
    """What identifies a tensor at a glance: shape, dtype, range, mean and a hash of its bytes."""

    shape: tuple
    dtype: str
    min: float
    max: float
    mean: float
    sha256: str

    def __str__(self):
        return (f"{self.shape} {self.dtype} min {self.min:+.4f} max {self.max:+.4f} mean {self.mean:+.5f} "
                f"sha256 {self.sha256[:12]}")


def fingerprint(tensor) -> Fingerprint:
    array = np.ascontiguousarray(torch.as_tensor(tensor).detach().cpu().numpy())
    return Fingerprint(tuple(array.shape), str(array.dtype), float(array.min()), float(array.max()),
                       float(array.mean()), hashlib.sha256(array.tobytes()).hexdigest())


def detect_face(image_bgr: np.ndarray):
    """The largest frontal face found by OpenCV's Haar cascade, as (x, y, w, h), or None."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(to_bgr8(image_bgr), cv2.COLOR_BGR2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
    if len(faces) == 0:
        return None
    return tuple(int(v) for v in max(faces, key=lambda f: f[2] * f[3]))


def crop_face(image_bgr: np.ndarray, box=None, margin: float = 2.0, size: int = MODEL_SIZE) -> np.ndarray:
    """A square crop ``margin`` times the face box, centred on it, resized to size x size (bicubic).

    This is a rough stand-in for GFPGAN's landmark alignment (facexlib), which needs downloaded weights.
    """
    box = box or detect_face(image_bgr)
    if box is None:
        raise ImageError("no face found by the Haar cascade; pass box=(x, y, w, h)")
    x, y, w, h = box
    side = int(round(max(w, h) * margin))
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), image_bgr.shape[1] - side)))
    top = int(round(min(max(cy - side / 2, 0), image_bgr.shape[0] - side)))
    crop = image_bgr[max(top, 0):top + side, max(left, 0):left + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)


def astronaut_face() -> np.ndarray:
    """The 512x512 face crop of scikit-image's astronaut (NASA, public domain) that data/faces/ ships."""
    from skimage import data

    image = data.astronaut()[:, :, ::-1].copy()
    return crop_face(image)


def write_image(path, image_bgr: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", image_bgr)
    if not ok:
        raise ImageError(f"{path}: OpenCV cannot encode an image with this extension")
    encoded.tofile(str(path))
    return path
