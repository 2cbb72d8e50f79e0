"""compat: the basicsr import alias (lazy) and the one place deprecation notices are filtered."""
import subprocess
import sys
import warnings


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_package_does_not_import_torchvision():
    # The alias used to import torchvision (and torch._dynamo) eagerly: 1.5 s added to every CLI call.
    assert run_python("import sys, gfpgan_debug; print('torchvision' in sys.modules)") == "False"


def test_old_torchvision_name_resolves_to_the_new_module_after_import():
    out = run_python("import gfpgan_debug\n"
                     "import torchvision.transforms.functional_tensor as old\n"
                     "import torchvision.transforms.functional as new\n"
                     "from basicsr.utils import img2tensor\n"
                     "print(old is new, callable(img2tensor))")
    assert out == "True True"


def test_without_the_package_the_old_name_is_missing():
    # Guards the test above: if torchvision brought the old name back, the alias would be dead code.
    out = run_python("import importlib.util\n"
                     "print(importlib.util.find_spec('torchvision.transforms.functional_tensor') is None)")
    assert out == "True"


def test_installing_twice_adds_one_hook():
    from gfpgan_debug import compat

    before = sum(isinstance(f, compat._Alias) for f in sys.meta_path)
    compat.install_basicsr_alias()
    assert sum(isinstance(f, compat._Alias) for f in sys.meta_path) == before <= 1


def test_torch_deprecations_are_silenced_only_inside_the_block():
    from gfpgan_debug.compat import torch_deprecations_silenced

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with torch_deprecations_silenced():
            warnings.warn("torch.jit.script is deprecated", DeprecationWarning)
        warnings.warn("torch.jit.script is deprecated", DeprecationWarning)
    assert len(seen) == 1
