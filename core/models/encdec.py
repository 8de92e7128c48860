"""Encoder-decoder networks from the lecture: the Keras convolutional autoencoder and U-Net."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from core.models.blocks import Concat


def conv_autoencoder(listing: str = "first") -> nn.Sequential:
    """The lecture's Keras autoencoder for 28x28x1 images, layer for layer.

    Keras "same" padding for a stride-2 3x3 transposed convolution doubles the size; in PyTorch
    that is padding=1 with output_padding=1: (7 - 1) * 2 - 2 + 3 + 1 = 14. Keras applies the
    activation inside the layer, before the BatchNormalization that follows it.

    Args:
        listing: which of the slides' two Keras listings. "first": every decoder layer has
            'same' padding and an activation. "second": the two stride-2 transposed convolutions
            have no activation, and the last two layers use Keras' default 'valid' padding, so
            the third transposed convolution gives 30x30x32 (the summary printed beside that
            listing says 28x28x32, copied from the first) and the last convolution 28x28x1.
            The parameters are the same.
    """
    same = listing == "first"
    act = (lambda name: [(name, nn.ReLU(inplace=True))]) if same else (lambda name: [])
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 32, 3)),                   # (N, 32, 26, 26)
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool2d(2)),                       # (N, 32, 13, 13)
        ("conv2", nn.Conv2d(32, 64, 3)),                  # (N, 64, 11, 11)
        ("relu2", nn.ReLU(inplace=True)),
        ("pool2", nn.MaxPool2d(2)),                       # (N, 64, 5, 5)
        ("conv3", nn.Conv2d(64, 64, 3)),                  # (N, 64, 3, 3)
        ("relu3", nn.ReLU(inplace=True)),
        ("flatten", nn.Flatten()),                        # (N, 576)
        ("dense", nn.Linear(576, 49)),                    # the bottleneck: 49 numbers
        ("relu4", nn.ReLU(inplace=True)),
        ("reshape", nn.Unflatten(1, (1, 7, 7))),          # (N, 1, 7, 7)
        ("tconv1", nn.ConvTranspose2d(1, 64, 3, stride=2, padding=1, output_padding=1)),
        *act("relu5"),                                    # (N, 64, 14, 14)
        ("bn1", nn.BatchNorm2d(64, eps=1e-3, momentum=0.01)),  # Keras' defaults
        ("tconv2", nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)),
        *act("relu6"),                                    # (N, 64, 28, 28)
        ("bn2", nn.BatchNorm2d(64, eps=1e-3, momentum=0.01)),
        ("tconv3", nn.ConvTranspose2d(64, 32, 3, padding=1 if same else 0)),
        ("relu7", nn.ReLU(inplace=True)),                 # (N, 32, 28, 28); 30x30 when 'valid'
        ("conv4", nn.Conv2d(32, 1, 3, padding=1 if same else 0)),  # (N, 1, 28, 28)
        ("sigmoid", nn.Sigmoid()),
    ]))


def _conv2d_block(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    """The lecture's `conv2d_block`: two 3x3 "same" convolutions, each with BN and ReLU."""
    layers: list[tuple[str, nn.Module]] = []
    for i, c in enumerate((c_in, c_out), start=1):
        layers.append((f"conv{i}", nn.Conv2d(c, c_out, 3, padding=1)))
        if batchnorm:
            layers.append((f"bn{i}", nn.BatchNorm2d(c_out)))
        layers.append((f"relu{i}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class UNet(nn.Module):
    """The lecture's U-Net (Ronneberger et al. 2015, in the Keras form of the slides).

    Four 2x2 max-pooling steps down (c1..c5), four stride-2 transposed convolutions up (u6..u9),
    each concatenated with the encoder map of the same size. H and W must be divisible by 16.
    """

    def __init__(self, n_filters: int = 16, batchnorm: bool = True, in_channels: int = 1) -> None:
        super().__init__()
        f = n_filters
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        c_in = in_channels
        for i, w in enumerate(widths, start=1):
            setattr(self, f"c{i}", _conv2d_block(c_in, w, batchnorm))
            if i < 5:
                setattr(self, f"p{i}", nn.MaxPool2d(2))
            c_in = w
        for i, w in zip(range(6, 10), reversed(widths[:4])):
            setattr(self, f"u{i}", nn.ConvTranspose2d(c_in, w, 3, stride=2, padding=1,
                                                      output_padding=1))
            setattr(self, f"cat{i}", Concat())
            setattr(self, f"c{i}", _conv2d_block(2 * w, w, batchnorm))
            c_in = w
        self.out = nn.Conv2d(f, 1, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, 5):
            x = getattr(self, f"c{i}")(x)
            skips.append(x)                       # c1..c4 wait for the decoder
            x = getattr(self, f"p{i}")(x)
        x = self.c5(x)                            # (N, 16f, H/16, W/16)
        for i, skip in zip(range(6, 10), reversed(skips)):
            x = getattr(self, f"cat{i}")(getattr(self, f"u{i}")(x), skip)
            x = getattr(self, f"c{i}")(x)
        return self.sigmoid(self.out(x))          # (N, 1, H, W)


class CenterCrop(nn.Module):
    """Crops a map to the centre `like`'s height and width: the paper's crop-and-copy, which
    makes the encoder's larger map fit the decoder's (unpadded convolutions shrink every map)."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        dh, dw = x.shape[-2] - like.shape[-2], x.shape[-1] - like.shape[-1]
        x = x.narrow(-2, dh // 2, like.shape[-2])
        return x.narrow(-1, dw // 2, like.shape[-1])   # (N, C, h, w) of `like`


def _valid_block(c_in: int, c_out: int) -> nn.Sequential:
    """The paper's two unpadded 3x3 convolutions, each followed by a ReLU (no BatchNorm)."""
    return nn.Sequential(OrderedDict([("conv1", nn.Conv2d(c_in, c_out, 3)), ("relu1", nn.ReLU(inplace=True)),
                                      ("conv2", nn.Conv2d(c_out, c_out, 3)), ("relu2", nn.ReLU(inplace=True))]))


class PaperUNet(nn.Module):
    """U-Net as Ronneberger et al. (2015) drew it: unpadded 3x3 convolutions (each map loses two
    pixels per side at every block), 64 filters doubling to 1024, 2x2 max-pooling, 2x2
    up-convolutions halving the channels, the encoder's map centre-cropped and concatenated
    (crop-and-copy), and a 1x1 convolution to 2 classes. 572x572 in, 388x388 out."""

    def __init__(self, n_filters: int = 64, classes: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        widths = [n_filters * 2 ** i for i in range(5)]
        c_in = in_channels
        for i, w in enumerate(widths, start=1):
            setattr(self, f"c{i}", _valid_block(c_in, w))
            if i < 5:
                setattr(self, f"p{i}", nn.MaxPool2d(2))
            c_in = w
        for i, w in zip(range(6, 10), reversed(widths[:4])):
            setattr(self, f"u{i}", nn.ConvTranspose2d(c_in, w, 2, stride=2))
            setattr(self, f"crop{i}", CenterCrop())
            setattr(self, f"cat{i}", Concat())
            setattr(self, f"c{i}", _valid_block(2 * w, w))
            c_in = w
        self.out = nn.Conv2d(n_filters, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, 5):
            x = getattr(self, f"c{i}")(x)
            skips.append(x)
            x = getattr(self, f"p{i}")(x)
        x = self.c5(x)                            # (N, 1024, 28, 28) at 572x572
        for i, skip in zip(range(6, 10), reversed(skips)):
            up = getattr(self, f"u{i}")(x)
            x = getattr(self, f"c{i}")(getattr(self, f"cat{i}")(getattr(self, f"crop{i}")(skip, up), up))
        return self.out(x)                        # (N, 2, 388, 388) at 572x572: class scores


def valid_unet_side(side: int) -> str | None:
    """Why a side length cannot go through the paper's U-Net (None when it can)."""
    if valid_unet_side_ok(side):
        return None
    near = min((n for n in range(max(1, side - 40), side + 41) if valid_unet_side_ok(n)),
               key=lambda n: abs(n - side), default=572)
    return (f"the paper's U-Net loses 4 pixels in every block, halves the map 4 times (an even size before each "
            f"pooling) and doubles it 4 times: {side} does not work, {near} does")


def valid_unet_side_ok(side: int) -> bool:
    """Every block loses 4 pixels, every pooling needs an even size, and every map on the way
    down and up (each up-convolution doubles it) keeps at least one pixel."""
    s = side
    for _ in range(4):
        s -= 4
        if s < 2 or s % 2:
            return False
        s //= 2
    s -= 4                      # the bottom block
    for _ in range(4):
        if s < 1:
            return False
        s = 2 * s - 4           # up-convolution, then the block
    return s >= 1


def unet_side_rule(side: int, options: dict) -> str | None:
    """Which heights and widths each form of U-Net takes (the registry's side rule)."""
    if options.get("padding") == "valid":
        return valid_unet_side(side)
    if side % 16:
        return (f"the lecture's U-Net needs sides divisible by 16 (four 2x2 poolings down, then the maps are "
                f"concatenated back up): {side} does not work, {16 * max(1, round(side / 16))} does")
    return None


def unet(n_filters: int = 16, batchnorm: bool = True, padding: str = "same") -> nn.Module:
    """The lecture's U-Net (padding "same", see `UNet`), or the paper's (padding "valid", see
    `PaperUNet`: its own 64 filters, no BatchNorm)."""
    if padding == "valid":
        return PaperUNet()
    return UNet(n_filters, batchnorm)
