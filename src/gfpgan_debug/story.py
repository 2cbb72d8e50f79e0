"""The original post's export script, and its fix: the two models every notebook compares.

The post's script built the model, read the checkpoint and called ``load_state_dict(..., strict=False)``.
Whatever the exact dict handed over, the outcome was the same: no key matched, so nothing was loaded, and
``strict=False`` said nothing. Two common ways to get there, both reproduced here:

* ``"whole_dict"``: the whole checkpoint (``{'params_ema': {...}}``) is passed instead of the state dict
  inside it: one unexpected key, every model key missing;
* ``"renamed_keys"``: the right state dict, but a model whose module names were changed while making it
  scriptable (here: ``stylegan_decoder.`` renamed ``decoder.`` and ``conv_body_`` renamed ``body_``), so the
  keys no longer line up.

The fix is one line: load the unwrapped state dict strictly (``weights.model_from_checkpoint``).
"""
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from gfpgan_debug import export
from gfpgan_debug.arch import GFPGANv1Clean
from gfpgan_debug.weights import LoadReport, card_config, choose_weights, infer_config, load_checkpoint, model_from_checkpoint

# The broken model's random initialisation, fixed so every notebook sees the same wrong picture. Not 0: the demo
# weights were trained from seed 0's initialisation, and a broken model that starts where training started
# would share a few untrained tensors with the checkpoint (1 is also the demo card's "fresh weights" model).
INIT_SEED = 1


def weights_config(weights_path) -> dict:
    """The constructor config of a checkpoint: its JSON card, else inferred from its shapes."""
    return card_config(weights_path) or infer_config(load_checkpoint(weights_path), str(weights_path))


def renamed(key: str) -> str:
    """The key a module would have after the renaming of the ``renamed_keys`` fault."""
    return key.replace("stylegan_decoder.", "decoder.").replace("conv_body_", "body_")


def broken_model(weights_path=None, mode: str = "whole_dict", seed: int = INIT_SEED) -> Tuple[nn.Module, object]:
    """The model as the post's export script made it, and what ``load_state_dict`` returned.

    Returns ``(model, incompatible_keys)``; the model is in eval mode and runs on its random initialisation.
    """
    weights_path = Path(weights_path or choose_weights().path)
    torch.manual_seed(seed)
    model = GFPGANv1Clean(**weights_config(weights_path))
    checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    if mode == "whole_dict":
        result = model.load_state_dict(checkpoint, strict=False)  # the bug: the whole dict, silently ignored
    elif mode == "renamed_keys":
        state_dict = checkpoint.get("params_ema", checkpoint.get("params", checkpoint))
        result = model.load_state_dict({renamed(k): v for k, v in state_dict.items()}, strict=False)
    else:
        raise ValueError(f"mode must be 'whole_dict' or 'renamed_keys', got {mode!r}")
    return model.eval(), result


def fixed_model(weights_path=None) -> Tuple[nn.Module, LoadReport]:
    """The fix: the state dict under ``params_ema`` (or ``params``), loaded strictly, with a report."""
    return model_from_checkpoint(weights_path or choose_weights().path, strict=True)


def exported(model: nn.Module, kind: str = "torchscript", **options) -> Path:
    """The cached artefact of ``model`` (``torchscript`` → .pt, ``onnx`` → .onnx), as the export script made it."""
    return export.export_cached(model, kind, **options)


def artefacts(weights_path=None, cache_dir: Optional[Path] = None) -> dict:
    """Both models and their TorchScript and ONNX artefacts: the whole cast of the workbook."""
    weights_path = Path(weights_path or choose_weights().path)
    broken, _ = broken_model(weights_path)
    fixed, report = fixed_model(weights_path)
    cast = dict(weights=weights_path, broken=broken, fixed=fixed, report=report)
    for name, model in (("broken", broken), ("fixed", fixed)):
        cast[f"{name}_pt"] = export.export_cached(model, "torchscript", cache_dir=cache_dir, method="script")
        cast[f"{name}_onnx"] = export.export_cached(model, "onnx", cache_dir=cache_dir, dynamo=False)
    return cast
