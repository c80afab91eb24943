#!/usr/bin/env python
"""Rasterizer benchmark; the same as `privsplat render-bench` (see privsplat/render/bench.py)."""

import sys

from privsplat.cli import main

if __name__ == "__main__":
    sys.exit(main(["render-bench", *sys.argv[1:]]))
