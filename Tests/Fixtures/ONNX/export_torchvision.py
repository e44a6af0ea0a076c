#!/usr/bin/env python3
"""Writes full-size torchvision classification models as ONNX files, for `prunekit bench onnx`
and for trying the importer on real architectures. Not committed: each is 14-530 MB.

Run by hand (torch, torchvision and onnx from pip; see make_fixtures.py for a venv):

    python Tests/Fixtures/ONNX/export_torchvision.py --out /tmp/tv                # the benchmark's seven
    python Tests/Fixtures/ONNX/export_torchvision.py --out /tmp/tv --all          # every classification model
    python Tests/Fixtures/ONNX/export_torchvision.py --out /tmp/tv resnet18 vgg16_bn

Weights are torchvision's random initialisation with a fixed seed (nothing is downloaded:
timing and the importer do not depend on trained values). Each model is exported in
evaluation mode with torch.onnx.export(dynamo=False, opset_version=17), 1x3x224x224 input
with a dynamic batch, so BatchNorm is folded into the convolutions as a user's export would
have it. A model that fails to build or export is reported and skipped.
"""
import argparse
import os
import sys

import torch
import torchvision

BENCHMARK = ["resnet18", "resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "resnext50_32x4d", "vgg16_bn"]


def export(name, out):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    size = 299 if name == "inception_v3" else 224
    x = torch.randn(1, 3, size, size)
    path = os.path.join(out, name + ".onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="torchvision model names (default: the benchmark's seven)")
    parser.add_argument("--out", required=True, help="directory to write NAME.onnx into")
    parser.add_argument("--all", action="store_true", help="every torchvision classification model")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = args.names or (torchvision.models.list_models(module=torchvision.models) if args.all else BENCHMARK)
    failed = []
    for name in names:
        try:
            path = export(name, args.out)
            print(f"{name}: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)
        except Exception as error:  # report and go on: the list says which models export at all
            failed.append(name)
            print(f"{name}: not exported: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", flush=True)
    print(f"{len(names) - len(failed)} exported, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed and not args.all else 0


if __name__ == "__main__":
    sys.exit(main())
