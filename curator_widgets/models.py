"""Backbones and self-supervised heads: a torchvision/small-CNN encoder composed with lightly's heads and losses.

The `Encoder` carries its own input normalization (per-dataset channel statistics) so a loaded
model can never be fed un-normalized pixels by mistake.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from .errors import CuratorError

BACKBONES = ("small_cnn", "resnet18", "resnet50", "resnet18_cifar", "resnet50_cifar")
METHODS = ("simclr", "simsiam", "byol")
# Smallest input each backbone still reduces to a non-empty feature map.
MIN_IMAGE_SIZE = {"small_cnn": 16, "resnet18": 32, "resnet50": 32, "resnet18_cifar": 8, "resnet50_cifar": 8}
_TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """A 4-conv VGG-style net (~10 MFLOP at 64 px) so SSL trains in minutes on two CPU cores.

    A stride-2 stem then max-pools: on UC Merced at 64 px this beat both a 3x3/stride-1 stem
    (4x the compute) and a 4x4 patchify stem in kNN accuracy after the same 10 epochs.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256)):
        super().__init__()
        w = list(widths)
        layers: list[nn.Module] = _conv_bn(3, w[0], stride=2)
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [nn.MaxPool2d(2)] + _conv_bn(cin, cout)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.dim = w[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str, weights: str | None = None, progress: bool = True) -> tuple[nn.Module, int]:
    """(backbone mapping NCHW -> [N, dim], dim); published weights are fetched only when named."""
    if name not in BACKBONES:
        raise CuratorError(f"unknown backbone {name!r}", f"use one of {', '.join(BACKBONES)}")
    if name == "small_cnn":
        if weights:
            raise CuratorError(f"the small CNN has no published weights (asked for {weights!r})",
                               "leave weights=None, or use backbone='resnet18'/'resnet50' with weights='IMAGENET1K_V1'")
        net = SmallCNN()
        return net, net.dim
    import torchvision

    arch, _, stem = name.partition("_")
    if weights and stem:
        raise CuratorError(f"{name} has no published weights (its stem differs from ImageNet's; asked for {weights!r})",
                           f"leave weights=None, or use backbone={arch!r} with weights='IMAGENET1K_V1'")
    net = getattr(torchvision.models, arch)(weights=None)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    if stem == "cifar":
        # small-image stem: a 3x3 stride-1 conv and no max-pool, so a 64 px chip ends in an 8x8 map
        # (the ImageNet stem's 4x downsampling leaves 2x2); 16x the compute at the same size
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    if weights:
        net.load_state_dict(_published_state(arch, weights, progress), strict=False)
    return net, dim


def _published_state(name: str, weights: str, progress: bool) -> dict:
    """torchvision weights by name (e.g. 'IMAGENET1K_V1'); a failed download becomes a clear error."""
    import torchvision

    enum_name = _TORCHVISION_WEIGHTS[name]
    try:
        w = torchvision.models.get_weight(f"{enum_name}.{weights}")
    except (ValueError, KeyError, AttributeError):
        options = [m.name for m in getattr(torchvision.models, enum_name)]
        raise CuratorError(f"{name} has no published weights named {weights!r}",
                           f"use one of {', '.join(options)} (or weights=None to train from scratch)") from None
    try:
        state = w.get_state_dict(progress=progress, check_hash=True)
    except Exception as e:  # URLError, OSError, HTTP errors, hash mismatch: all mean "could not get them"
        raise CuratorError(f"could not download {enum_name}.{weights} from {w.url} ({type(e).__name__}: {e})",
                           "this machine is probably offline: train from scratch with weights=None, or place the file "
                           "in the torch hub cache (~/.cache/torch/hub/checkpoints) first") from None
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


class Encoder(nn.Module):
    """Normalization + backbone: float pixels in [0, 1] (or uint8) NCHW -> features [N, dim]."""

    def __init__(self, backbone: nn.Module, dim: int, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.25, 0.25, 0.25), image_size: int = 64, name: str = "small_cnn"):
        super().__init__()
        self.backbone = backbone
        self.dim = int(dim)
        self.image_size = int(image_size)
        self.backbone_name = name
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.backbone(x).flatten(1)


def head_dims(method: str, dim: int) -> dict[str, int]:
    """Head widths scaled to the backbone so the small CNN is not dominated by its heads."""
    if method == "simclr":
        return {"hidden": dim, "out": 128}
    if method == "simsiam":
        out = min(2048, 4 * dim)
        return {"hidden": out, "out": out, "pred_hidden": max(64, out // 4)}
    if method == "byol":
        return {"hidden": min(4096, 4 * dim), "out": 256 if dim >= 512 else 128, "pred_hidden": min(4096, 4 * dim)}
    raise CuratorError(f"unknown SSL method {method!r}", f"use one of {', '.join(METHODS)}")


class SSLModel(nn.Module):
    """An encoder plus the method's lightly heads; `loss(view0, view1)` is the whole objective."""

    def __init__(self, method: str, encoder: Encoder, temperature: float = 0.2):
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules import (BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead,
                                            SimSiamPredictionHead, SimSiamProjectionHead)
        from lightly.models.utils import deactivate_requires_grad

        if method not in METHODS:
            raise CuratorError(f"unknown SSL method {method!r}", f"use one of {', '.join(METHODS)}")
        self.method = method
        self.encoder = encoder
        d = encoder.dim
        h = head_dims(method, d)
        if method == "simclr":
            self.projection = SimCLRProjectionHead(d, h["hidden"], h["out"])
            self.criterion = NTXentLoss(temperature=temperature)
        elif method == "simsiam":
            self.projection = SimSiamProjectionHead(d, h["hidden"], h["out"])
            self.prediction = SimSiamPredictionHead(h["out"], h["pred_hidden"], h["out"])
            self.criterion = NegativeCosineSimilarity()
        else:
            self.projection = BYOLProjectionHead(d, h["hidden"], h["out"])
            self.prediction = BYOLPredictionHead(h["out"], h["pred_hidden"], h["out"])
            self.criterion = NegativeCosineSimilarity()
            self.encoder_momentum = copy.deepcopy(encoder)
            self.projection_momentum = copy.deepcopy(self.projection)
            deactivate_requires_grad(self.encoder_momentum)
            deactivate_requires_grad(self.projection_momentum)

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The method's symmetric loss on two augmented views (float [0, 1] NCHW)."""
        if self.method == "simclr":
            z = self.projection(self.encoder(torch.cat([x0, x1])))
            z0, z1 = z.float().chunk(2)
            return self.criterion(z0, z1)
        if self.method == "simsiam":
            z = self.projection(self.encoder(torch.cat([x0, x1])))
            p = self.prediction(z)
            z0, z1 = z.float().detach().chunk(2)
            p0, p1 = p.float().chunk(2)
            return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        x = torch.cat([x0, x1])
        p0, p1 = self.prediction(self.projection(self.encoder(x))).float().chunk(2)
        with torch.no_grad():
            t0, t1 = self.projection_momentum(self.encoder_momentum(x)).float().chunk(2)
        return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The loss, as forward, so `torch.compile(model)` compiles the whole training computation."""
        return self.loss(x0, x1)

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """BYOL's target network follows the online one as an exponential moving average."""
        if self.method == "byol":
            from lightly.models.utils import update_momentum

            update_momentum(self.encoder, self.encoder_momentum, m)
            update_momentum(self.projection, self.projection_momentum, m)

    def trainable_modules(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if not name.endswith("_momentum") and name != "criterion"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for a device that is not there is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CuratorError(f"unknown device {device!r}", "use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CuratorError("device='cuda' was asked for but no CUDA GPU is visible",
                           "use device='auto' (falls back to the CPU) or check the GPU driver")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op on CPU, where bf16 is usually slower."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bool(enabled and device.type == "cuda"))


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None,
           amp: bool = True, channels_last: bool = True) -> torch.Tensor:
    """Features of uint8/float NCHW images as float32 [n, dim] on the CPU, in batches, without grad."""
    dev = next(encoder.parameters()).device if device is None else torch.device(device)
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(dev, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp):
                out.append(encoder(x).float().cpu())
    finally:
        encoder.train(was_training)
    dim = getattr(encoder, "dim", 0)
    return torch.cat(out) if out else torch.zeros(0, dim)
