"""Privacy: the operator σ, `protect`, and the manifest guard. Light at import time."""

from .sigma import SigmaParams, gradient_magnitude, protected_size

__all__ = ["SigmaParams", "gradient_magnitude", "protected_size"]
