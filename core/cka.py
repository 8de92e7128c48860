"""Linear centered kernel alignment (CKA): how alike two representations of the same images are.

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited" (ICML
2019). For activations X (n x p) and Y (n x q) of the same n examples, with K = X X^T and L = Y Y^T
their Gram matrices and H = I - 11^T / n the centering matrix:

    CKA(X, Y) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F)

It is 1 for identical representations, invariant to orthogonal transforms and isotropic scaling of
either (a rotated, rescaled copy of a layer is the same layer), not to arbitrary linear maps, and
comparable across layers of different widths. With centred features it equals
||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), the paper's feature-space form; the Gram form costs n x n,
whatever the layer's width, which is why the fine-tuning view keeps only Gram matrices.
"""

from __future__ import annotations

import math

import torch


def gram(x: torch.Tensor) -> torch.Tensor:
    """K = X X^T in float64 for activations (n, ...) flattened to (n, p)."""
    f = x.detach().flatten(1).double()  # (n, p)
    return f @ f.T                      # (n, n)


def center(k: torch.Tensor) -> torch.Tensor:
    """H K H: the Gram matrix of the features with each feature's mean over the examples removed."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    """Linear CKA from two (n, n) Gram matrices of the same examples; NaN when a representation does
    not vary over the examples (nothing to compare)."""
    if k.shape != l.shape or k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"two Gram matrices of the same n examples expected, got {tuple(k.shape)} and {tuple(l.shape)}")
    kc, lc = center(k.double()), center(l.double())
    denom = math.sqrt(float((kc * kc).sum()) * float((lc * lc).sum()))
    return float((kc * lc).sum()) / denom if denom > 0 else float("nan")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of activations x (n, ...) and y (n, ...) of the same n examples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"both representations must hold the same examples: {x.shape[0]} vs {y.shape[0]}")
    return cka_from_grams(gram(x), gram(y))
