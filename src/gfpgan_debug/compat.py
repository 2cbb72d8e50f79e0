"""Compatibility fixes that must run before any third-party import that needs them.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module torchvision 0.17 removed
(torchvision 0.29 is pinned here). An import hook answers that one name with
``torchvision.transforms.functional``, so ``from basicsr.utils import img2tensor`` works; ``import gfpgan_debug``
installs the hook, so every entry point (library, notebooks, tests, subprocesses that import the package) gets
it. The hook is lazy: torchvision (and the torch._dynamo it pulls in, about 1.5 s) is only imported when
something asks for the old name, not on every ``import gfpgan_debug``.
"""
import contextlib
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

OLD_NAME = "torchvision.transforms.functional_tensor"
NEW_NAME = "torchvision.transforms.functional"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``OLD_NAME`` and loads it as the module ``NEW_NAME``."""

    def find_spec(self, name, path=None, target=None):
        if name != OLD_NAME:
            return None
        try:
            importlib.util.find_spec(NEW_NAME)
        except ImportError:  # torchvision absent: nothing to alias, basicsr fails on its own terms
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(NEW_NAME)

    def exec_module(self, module):
        pass  # the real module is already executed


def install_basicsr_alias() -> None:
    if OLD_NAME in sys.modules or any(isinstance(finder, _Alias) for finder in sys.meta_path):
        return
    sys.meta_path.append(_Alias())


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
