"""GFPGANv1Clean: a U-Net whose features steer a StyleGAN2 decoder through SFT.

Written from the paper (Wang et al., "Towards Real-World Blind Face Restoration with Generative Facial
Prior", CVPR 2021, figure 2) and the behaviour of TencentARC/GFPGAN's clean architecture, so that:

* every ``state_dict`` key, shape and order equals the official checkpoints'
  (``shared/reference/gfpganv1_clean_512_state_dict.json``);
* the forward computes what upstream computes, operation for operation;
* ``torch.jit.script(model)`` works on the model exactly as it is.

The picture, for a 512x512 face::

    x ─ conv_body_first ─ down 512→4 (ResBlocks) ─ final_conv ─ final_linear ─► style codes (w)
                              │ unet skips                                            │
                              ▼                                                       ▼
    4x4 ─ up 4→512 (ResBlocks) ─┬─ toRGB ─► out_rgbs (8x8 … 512x512)       StyleGAN2 decoder
                                └─ condition_scale / condition_shift ─► SFT ─► (modulated convs) ─► image

Comments marked ``TorchScript:`` explain a choice that exists only so that ``torch.jit.script`` accepts the
code; none of them changes a value or a key.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gfpgan_debug.compat import torch_deprecations_silenced

LEAKY_SLOPE = 0.2  # every leaky ReLU in the model (TorchScript: forward() spells it out as a literal)


def channel_table(narrow: float, channel_multiplier: int) -> Dict[int, int]:
    """Channels per resolution, as StyleGAN2 sizes them (wide at low resolution, narrow at high)."""
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * channel_multiplier * narrow),
        128: int(128 * channel_multiplier * narrow),
        256: int(64 * channel_multiplier * narrow),
        512: int(32 * channel_multiplier * narrow),
        1024: int(16 * channel_multiplier * narrow),
    }


# ---------------------------------------------------------------------------------------------------------
# The U-Net (degradation removal module)
# ---------------------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """conv3x3 → leaky ReLU → resample → conv3x3 → leaky ReLU, plus a 1x1 conv of the resampled input."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if mode not in ("down", "up"):
            raise ValueError(f"ResBlock mode must be 'down' or 'up', got {mode!r}")
        # TorchScript: a float, not upstream's int 2; interpolate computes the same either way.
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu_(self.conv1(x), negative_slope=0.2)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu_(self.conv2(out), negative_slope=0.2)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return out + self.skip(x)


# ---------------------------------------------------------------------------------------------------------
# The StyleGAN2 decoder (generative facial prior), "clean": no compiled CUDA ops
# ---------------------------------------------------------------------------------------------------------


class NormStyleCode(nn.Module):
    """Pixel norm of the style code: x / sqrt(mean(x^2) + 1e-8)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def kaiming_init_(linear: nn.Linear, a: float, nonlinearity: str, bias_fill: float) -> None:
    """He-normal weights (fan in) and a constant bias, as StyleGAN2's style layers are initialised."""
    nn.init.kaiming_normal_(linear.weight, a=a, mode="fan_in", nonlinearity=nonlinearity)
    nn.init.constant_(linear.bias, bias_fill)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's weight (de)modulation: scale the kernel's input channels by the style, renormalise each
    output channel to unit norm, then convolve each sample with its own kernel (batch folded into groups)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None, eps: float = 1e-8):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.eps = eps
        self.padding = kernel_size // 2
        # TorchScript: the resampling is kept as a float scale (1.0 = none), not an Optional[str].
        scales = {None: 1.0, "upsample": 2.0, "downsample": 0.5}
        if sample_mode not in scales:
            raise ValueError(f"sample_mode must be None, 'upsample' or 'downsample', got {sample_mode!r}")
        self.resample_scale = scales[sample_mode]

        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        kaiming_init_(self.modulation, a=0.0, nonlinearity="linear", bias_fill=1.0)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(in_channels * kernel_size**2))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        b, c, h, w = x.shape
        style = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.weight * style  # (b, c_out, c_in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)
        weight = weight.view(b * self.out_channels, c, self.kernel_size, self.kernel_size)

        if self.resample_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.resample_scale, mode="bilinear", align_corners=False)
        b, c, h, w = x.shape
        out = F.conv2d(x.view(1, b * c, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, out.shape[2], out.shape[3])


class StyleConv(nn.Module):
    """Modulated conv → + noise × strength → + bias → leaky ReLU (× sqrt 2 to keep the variance)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: Optional[str] = None):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=demodulate, sample_mode=sample_mode)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.activate = nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)

    def forward(self, x: Tensor, style: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        out = self.modulated_conv(x, style) * 2**0.5
        if noise is None:  # fresh noise on every call: the upstream default
            b, _, h, w = out.shape
            noise = out.new_empty(b, 1, h, w).normal_()
        out = out + self.weight * noise
        out = out + self.bias
        return self.activate(out)


class StyleConvModule(nn.Module):
    """TorchScript: the type that lets the decoder index ``style_convs`` with a computed position."""

    def forward(self, x: Tensor, style: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        pass


with torch_deprecations_silenced():
    StyleConvModule = torch.jit.interface(StyleConvModule)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, added to the upsampled RGB of the level below."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, kernel_size=1, num_style_feat=num_style_feat,
                                              demodulate=False, sample_mode=None)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Optional[Tensor] = None) -> Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2.0, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 tensor StyleGAN2 starts from."""

    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


class NoiseBank(nn.Module):
    """The stored per-layer noise maps ``noise0 … noise{n-1}``, used when ``randomize_noise=False``."""

    def __init__(self, sizes: List[int]):
        super().__init__()
        for i, size in enumerate(sizes):
            self.register_buffer(f"noise{i}", torch.randn(1, 1, size, size))

    def forward(self) -> List[Tensor]:
        # TorchScript: named_buffers() is unrolled at compile time; getattr(self, f"noise{i}") is not allowed.
        return [noise for _, noise in self.named_buffers()]


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by the U-Net's SFT conditions (scale and shift)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1, sft_half: bool = False):
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half

        style_mlp: List[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            linear = nn.Linear(num_style_feat, num_style_feat, bias=True)
            kaiming_init_(linear, a=LEAKY_SLOPE, nonlinearity="leaky_relu", bias_fill=0.0)
            style_mlp += [linear, nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)]
        self.style_mlp = nn.Sequential(*style_mlp)

        channels = channel_table(narrow, channel_multiplier)
        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat, demodulate=True)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)

        self.log_size = int(math.log(out_size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1  # style convs, each with its noise map
        self.num_latent = self.log_size * 2 - 2  # style codes consumed

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[2**log_res]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, sample_mode="upsample"))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels
        # noise k belongs to style conv k (style_conv1 is 0): sizes 4, 8, 8, 16, 16, ...
        self.noises = NoiseBank([2**((k + 5) // 2) for k in range(self.num_layers)])

    def sft(self, out: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        """Spatial feature transform: out * scale + shift, on all channels or only the second half."""
        if self.sft_half:
            out_same, out_sft = torch.split(out, int(out.size(1) // 2), dim=1)
            return torch.cat([out_same, out_sft * scale + shift], dim=1)
        return out * scale + shift

    def forward(self, styles: Tensor, conditions: List[Tensor], input_is_latent: bool = False,
                randomize_noise: bool = True) -> Tensor:
        if not input_is_latent:
            styles = self.style_mlp(styles)

        # TorchScript: an explicitly typed list, None meaning "draw fresh noise".
        noises: List[Optional[Tensor]] = []
        for stored in self.noises():
            noises.append(None if randomize_noise else stored)

        # one style code per layer: (b, num_latent, c); a single code (b, c) is repeated for every layer
        latent = styles if styles.dim() >= 3 else styles.unsqueeze(1).repeat(1, self.num_latent, 1)

        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1], None)

        for level, to_rgb in enumerate(self.to_rgbs):
            k = 2 * level + 1  # index of this level's first style code and noise map
            out = self.style_conv(2 * level, out, latent[:, k], noises[k])  # upsamples
            if 2 * level + 1 < len(conditions):  # the conditions may cover fewer levels
                out = self.sft(out, conditions[2 * level], conditions[2 * level + 1])
            out = self.style_conv(2 * level + 1, out, latent[:, k + 1], noises[k + 1])
            skip = to_rgb(out, latent[:, k + 2], skip)
        return skip

    def style_conv(self, index: int, x: Tensor, style: Tensor, noise: Optional[Tensor]) -> Tensor:
        """``style_convs[index](x, style, noise)``."""
        if torch.jit.is_scripting():
            # TorchScript: a ModuleList indexed by a computed position needs an interface type, and an
            # interface is called through .forward().
            conv: StyleConvModule = self.style_convs[index]
            return conv.forward(x, style, noise)
        # Eager (and tracing, hence the ONNX export): through __call__, so forward hooks fire and the legacy
        # ONNX exporter names the nodes after this module's path.
        return self.style_convs[index](x, style, noise)


# ---------------------------------------------------------------------------------------------------------
# GFPGAN
# ---------------------------------------------------------------------------------------------------------


def sft_branch(channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 → leaky ReLU → conv3x3: makes one SFT map (scale or shift) from U-Net features."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1),
        nn.LeakyReLU(LEAKY_SLOPE, True),
        nn.Conv2d(channels, out_channels, 3, 1, 1),
    )


class GFPGANv1Clean(nn.Module):
    """The GFPGAN generator, clean version (pure PyTorch), key-compatible with the official checkpoints.

    Arguments are upstream's. The official v1.2/v1.3/v1.4 weights use ``out_size=512, num_style_feat=512,
    channel_multiplier=2, decoder_load_path=None, fix_decoder=False, num_mlp=8, input_is_latent=True,
    different_w=True, narrow=1, sft_half=True``.
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: int = 1,
                 decoder_load_path: Optional[str] = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__()
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log(out_size, 2))

        channels = channel_table(narrow * 0.5, channel_multiplier)  # the U-Net is half as wide
        first_size = 2**self.log_size
        self.conv_body_first = nn.Conv2d(3, channels[first_size], 1)

        # encoder: out_size → 4, halving each block
        self.conv_body_down = nn.ModuleList()
        in_channels = channels[first_size]
        for log_res in range(self.log_size, 2, -1):
            out_channels = channels[2**(log_res - 1)]
            self.conv_body_down.append(ResBlock(in_channels, out_channels, mode="down"))
            in_channels = out_channels
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)

        # decoder: 4 → out_size, doubling each block
        self.conv_body_up = nn.ModuleList()
        in_channels = channels[4]
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[2**log_res]
            self.conv_body_up.append(ResBlock(in_channels, out_channels, mode="up"))
            in_channels = out_channels
        self.toRGB = nn.ModuleList([nn.Conv2d(channels[2**r], 3, 1) for r in range(3, self.log_size + 1)])

        # style codes: one per decoder layer (different_w), or one shared
        num_codes = (self.log_size * 2 - 2) if different_w else 1
        self.final_linear = nn.Linear(channels[4] * 4 * 4, num_codes * num_style_feat)

        self.stylegan_decoder = StyleGAN2GeneratorCSFT(out_size=out_size, num_style_feat=num_style_feat,
                                                       num_mlp=num_mlp, channel_multiplier=channel_multiplier,
                                                       narrow=narrow, sft_half=sft_half)
        if decoder_load_path:
            decoder_state = torch.load(decoder_load_path, map_location="cpu", weights_only=True)
            self.stylegan_decoder.load_state_dict(decoder_state["params_ema"])
        if fix_decoder:
            for param in self.stylegan_decoder.parameters():
                param.requires_grad = False

        # SFT conditions (scale and shift) for each decoder level
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            level_channels = channels[2**log_res]
            sft_channels = level_channels if sft_half else level_channels * 2
            self.condition_scale.append(sft_branch(level_channels, sft_channels))
            self.condition_shift.append(sft_branch(level_channels, sft_channels))

    def forward(self, x: Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True) -> Tuple[Tensor, List[Tensor]]:
        """Returns ``(image, out_rgbs)``: the restored face and the U-Net's RGB maps, 8x8 up to out_size.

        ``return_latents`` is accepted for upstream compatibility; like upstream, it changes nothing returned.
        TorchScript: upstream's ``**kwargs`` is dropped (a scripted forward takes named arguments only).
        """
        conditions: List[Tensor] = []
        unet_skips: List[Tensor] = []
        out_rgbs: List[Tensor] = []

        # encoder
        feat = F.leaky_relu_(self.conv_body_first(x), negative_slope=0.2)
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)
        feat = F.leaky_relu_(self.final_conv(feat), negative_slope=0.2)

        # style code
        style_code = self.final_linear(feat.view(feat.size(0), -1))
        if self.different_w:
            style_code = style_code.view(style_code.size(0), -1, self.num_style_feat)

        # decoder, producing the SFT conditions and the intermediate RGB maps
        level = 0
        for up, scale_branch, shift_branch, to_rgb in zip(self.conv_body_up, self.condition_scale,
                                                          self.condition_shift, self.toRGB):
            feat = up(feat + unet_skips[level])
            conditions.append(scale_branch(feat).clone())
            conditions.append(shift_branch(feat).clone())
            if return_rgb:
                out_rgbs.append(to_rgb(feat))
            level += 1

        image = self.stylegan_decoder(style_code, conditions, input_is_latent=self.input_is_latent,
                                      randomize_noise=randomize_noise)
        return image, out_rgbs


OFFICIAL_CONFIG = dict(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                       fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                       sft_half=True)
