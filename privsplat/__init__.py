"""privsplat: privacy-preserving reconstruction with 2D Gaussian surfels."""

__version__ = "0.1.0"
