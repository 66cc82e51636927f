"""Files in and out, safely.

    safeio.py   the one opener of untrusted files: regular files only, checked headers, bounded sizes
    atomic.py   writes through a temporary file and a rename: a crash never leaves half a file
    images.py   sample grids and the loss plot as PNG
"""
