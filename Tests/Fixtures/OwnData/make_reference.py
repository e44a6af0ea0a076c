#!/usr/bin/env python3
"""Reference pixel values for PruneKit's image-folder pipeline, computed with Pillow.

Run by hand (pip install pillow numpy); it writes the two images it uses and
reference.json, which Tests/PruneKitTests/ImageFolderTests.swift compares against.

For each case: the image is converted to RGB (Pillow's convert("RGB"): grey replicated),
its shorter side resized to `resize` (the longer to int(resize * long / short), as
torchvision's Resize does) with Image.BILINEAR, the centre `crop` square kept (offsets
int(round((size - crop) / 2)), as torchvision's CenterCrop), and the values stored as
the 8-bit integers in [C, H, W] order; the Swift test normalises them with ImageNet's
mean and std and compares with PruneKit's output.
"""
import json
import os

import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(12)

# A colour image with smooth gradients and noise (so every filter tap matters), 45 x 31.
h, w = 31, 45
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([(xx * 5 + yy * 2) % 256, (yy * 8) % 256, (xx * yy) % 256], axis=-1).astype(np.int32)
rgb = np.clip(rgb + rng.integers(-20, 21, size=rgb.shape), 0, 255).astype(np.uint8)
Image.fromarray(rgb, "RGB").save(os.path.join(here, "reference.png"))

# A grey-scale image, 20 wide x 26 high (portrait).
grey = np.clip((np.mgrid[0:26, 0:20][0] * 9 + rng.integers(0, 40, size=(26, 20))), 0, 255).astype(np.uint8)
Image.fromarray(grey, "L").save(os.path.join(here, "reference-grey.png"))


def view(path, resize, crop, flip=False):
    img = Image.open(os.path.join(here, path)).convert("RGB")
    width, height = img.size
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    img = img.resize(size, Image.BILINEAR)
    top = int(round((size[1] - crop) / 2.0))
    left = int(round((size[0] - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img).transpose(2, 0, 1).reshape(-1).tolist()


cases = []
for path, resize, crop in [("reference.png", 24, 16), ("reference.png", 64, 48), ("reference.png", 31, 31),
                           ("reference-grey.png", 12, 10), ("reference-grey.png", 40, 33)]:
    cases.append({"image": path, "resize": resize, "crop": crop, "values": view(path, resize, crop)})

import PIL
with open(os.path.join(here, "reference.json"), "w") as f:
    json.dump({"pillow": PIL.__version__, "numpy": np.__version__, "mean": [0.485, 0.456, 0.406],
               "std": [0.229, 0.224, 0.225], "cases": cases}, f)
print("wrote reference.png, reference-grey.png, reference.json with Pillow", PIL.__version__)
