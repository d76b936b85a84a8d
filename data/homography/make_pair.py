"""Regenerate the overlapping image pair in this folder, deterministically.

Source: ``skimage/data/astronaut.png`` from the scikit-image 0.26.0 wheel (NASA photograph of
Eileen Collins, public domain; see README.md). The image is read straight out of the wheel with
``zipfile``, so scikit-image is not a dependency. Two virtual cameras look at the photograph
through known homographies; each view is rendered with ``cv2.warpPerspective`` (bilinear) and
saved as PNG. ``pair_truth.txt`` holds the ground-truth homography mapping right-view pixels to
left-view pixels.

Usage: ``python data/homography/make_pair.py [--wheel path/to/scikit_image-0.26.0-*.whl]``
(without --wheel, ``pip download scikit-image==0.26.0 --no-deps`` fetches it into a temp dir).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBER = "skimage/data/astronaut.png"
SIZE = (400, 360)  # (width, height) of each view

# Scene (512 x 512 photograph) -> view homographies: the left camera sees the left part head-on
# with a slight zoom; the right camera is rotated and tilted and sees the right part.
H_LEFT = np.array([[1.05, 0.02, -10.0], [-0.01, 1.05, -60.0], [0.0, 0.0, 1.0]])
H_RIGHT = np.array([[0.95, 0.12, -105.0], [-0.08, 1.0, -40.0], [-2.0e-4, 1.5e-4, 1.0]])


def _wheel(path: str | None) -> str:
    if path:
        return path
    tmp = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "scikit-image==0.26.0", "--no-deps", "-d", tmp],
                   check=True)
    return glob.glob(os.path.join(tmp, "*.whl"))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="scikit-image 0.26.0 wheel to read astronaut.png from")
    args = ap.parse_args()
    raw = zipfile.ZipFile(_wheel(args.wheel)).read(MEMBER)
    print(f"{MEMBER}: sha256 {hashlib.sha256(raw).hexdigest()}")
    scene = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    for name, h in (("left", H_LEFT), ("right", H_RIGHT)):
        view = cv2.warpPerspective(scene, h, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(os.path.join(HERE, f"{name}.png"), view, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    truth = H_LEFT @ np.linalg.inv(H_RIGHT)
    truth /= truth[2, 2]
    np.savetxt(os.path.join(HERE, "pair_truth.txt"), truth, fmt="%.10e",
               header="homography mapping right.png pixels to left.png pixels (H[2,2] = 1)")
    print("wrote left.png, right.png, pair_truth.txt in", HERE)


if __name__ == "__main__":
    main()
