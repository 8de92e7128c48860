"""Builders for the architectures that torchvision does not ship (or ships differently)."""
