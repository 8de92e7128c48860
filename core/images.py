"""Sample images that work offline: public-domain photos bundled with scikit-image.

(The full safe loader for uploads belongs to the feature-maps page; this module only serves the
bundled samples.)
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_image(name: str) -> np.ndarray:
    """One bundled photo as an (H, W, 3) uint8 array."""
    import skimage.data

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
    return getattr(skimage.data, name)()


def sample_batch(size: int = 224, names: tuple[str, ...] = SAMPLES) -> tuple[torch.Tensor, np.ndarray]:
    """The samples resized (short side) and centre-cropped to size x size.

    Returns:
        The ImageNet-normalised batch (N, 3, size, size) and the cropped uint8 images (N, size, size, 3).
    """
    tf = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    crops = [tf(torch.from_numpy(sample_image(n)).permute(2, 0, 1)) for n in names]  # (3, size, size) uint8
    batch = torch.stack(crops).float() / 255  # (N, 3, size, size)
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch)
    return norm, torch.stack(crops).permute(0, 2, 3, 1).numpy()
