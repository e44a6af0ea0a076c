#!/usr/bin/env python3
"""The torchvision side of `prunekit bench data`, run by hand on the folders it generates.

    prunekit bench data --dir /tmp/bench-data          # keeps /tmp/bench-data/n1000, n20000
    python3 bench_torchvision.py /tmp/bench-data/n1000 /tmp/bench-data/n20000

One shuffled epoch of ImageFolder(ROOT/train) with RandomResizedCrop(224),
RandomHorizontalFlip, ToTensor, Normalize (ImageNet), DataLoader(batch 64, 2 workers),
each batch consumed at once: images/s, and the largest resident set seen during the
epoch summed over the main process and its workers (VmRSS from /proc).
"""
import os
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def main():
    workers = int(os.environ.get("WORKERS", "2"))
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    print(f"torch {torch.__version__}, torchvision ImageFolder + DataLoader, batch 64, {workers} workers")
    print("images     epoch s   images/s   peak RSS (main + workers)")
    for root in sys.argv[1:]:
        data = datasets.ImageFolder(os.path.join(root, "train"), transform=tf)
        loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=workers)
        me = os.getpid()
        peak, seen, start = 0, 0, time.time()
        for x, y in loader:
            seen += x.shape[0]
            peak = max(peak, rss(me) + sum(rss(c) for c in children(me)))
        seconds = time.time() - start
        print(f"{len(data):<9,d} {seconds:8.2f}  {seen / seconds:9.0f}   {peak / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
