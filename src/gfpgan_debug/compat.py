"""Compatibility fixes that must run before any third-party import that needs them.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module torchvision 0.17 removed
(torchvision 0.29 is pinned here). Registering an alias that points at ``torchvision.transforms.functional``
lets ``from basicsr.utils import img2tensor`` work; ``import gfpgan_debug`` runs this, so every entry point
(library, notebooks, tests, subprocesses that import the package) gets it.
"""
import contextlib
import sys
import warnings


def install_basicsr_alias() -> None:
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional as functional
    except ImportError:  # torchvision absent: nothing to alias, basicsr would fail on its own terms
        return
    sys.modules[name] = functional


@contextlib.contextmanager
def torch_deprecations_silenced():
    """Hide torch's deprecation notices for TorchScript and the legacy ONNX exporter, which a user of this
    project cannot act on: the original bug lives in exactly those APIs. Every such filter lives here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", message=r".*(TorchScript|torch\.jit|jit\.|dynamo=False|legacy).*deprecated.*")
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export")
        yield
