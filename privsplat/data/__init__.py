"""Data in: every input format parsed into one Dataset (OpenCV cameras, normalised world).

Light at import time (numpy only); cv2 and torch are imported where images are read.
"""

from .dataset import Dataset, Frame
from .images import load_mask, load_protected, load_rgb, load_rgb_outside
from .load import load_dataset

__all__ = ["Dataset", "Frame", "load_dataset", "load_rgb", "load_mask", "load_protected", "load_rgb_outside"]
