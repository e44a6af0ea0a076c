#!/usr/bin/env python3
"""Writes the ONNX fixtures of PruneKit's ONNX tests, and their reference outputs.

Run by hand (the outputs are committed), from anywhere:

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install torch torchvision onnx onnxruntime numpy
    /tmp/fixtures-venv/bin/python Tests/Fixtures/ONNX/make_fixtures.py

Each model is small (widths 8-32, input 3x16x16), initialised with a fixed seed, given
non-trivial BatchNorm statistics, exported with torch.onnx.export(dynamo=False, opset 17,
dynamic batch) and run by ONNX Runtime on a fixed input batch. For each NAME it writes:

    NAME.onnx        the model
    NAME.json        {"input_shape", "input", "output_shape", "output"}: ONNX Runtime's outputs

and checks that torch and ONNX Runtime agree. It also writes the malformed models of the
bad-input tests with the onnx helper API (bad_*.onnx), and exports the folded-BatchNorm
form (eval-mode default) as well as the kept-BatchNorm form (TrainingMode.PRESERVE).
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
INPUT = (2, 3, 16, 16)


def conv_bn(cin, cout, stride=1, groups=1, kernel=3, act=nn.ReLU):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(inplace=True),
    )


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block, with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)       # torchvision's stem pool
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyVGG(nn.Module):
    """VGG with BatchNorm: two stages, max- and average-pooling, a two-layer classifier with dropout."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 16), *conv_bn(16, 16), nn.MaxPool2d(2, 2),
            *conv_bn(16, 32), *conv_bn(32, 32), nn.AvgPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(64, classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class TinyMobileNet(nn.Module):
    """Depthwise-separable blocks (depthwise 3x3 + pointwise 1x1), ReLU6 (Clip) in the first, ReLU
    in the second, a biased 1x1 head, and a classifier written as x @ W + b (MatMul + Add)."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = conv_bn(3, 16, stride=2)
        self.block1 = nn.Sequential(*conv_bn(16, 16, groups=16, act=nn.ReLU6), *conv_bn(16, 32, kernel=1, act=nn.ReLU6))
        self.block2 = nn.Sequential(*conv_bn(32, 32, stride=2, groups=32), *conv_bn(32, 32, kernel=1))
        self.head = nn.Conv2d(32, 48, 1, bias=True)
        self.weight = nn.Parameter(torch.randn(48, classes) * 0.1)
        self.bias = nn.Parameter(torch.randn(classes) * 0.1)

    def forward(self, x):
        x = torch.relu(self.head(self.block2(self.block1(self.stem(x)))))
        x = nn.functional.adaptive_avg_pool2d(x, 1)   # GlobalAveragePool
        return x.reshape(-1, 48) @ self.weight + self.bias   # Reshape [-1, 48], MatMul, Add


class MnistCNN(nn.Module):
    """A small CNN for 1x28x28 input, so that `prunekit prune --model mnist_cnn.onnx` runs on the bundled mnist-5k."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(*conv_bn(1, 8), nn.MaxPool2d(2), *conv_bn(8, 16), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 7 * 7, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def randomize_batchnorm(model, generator):
    """Non-trivial running statistics and affine parameters, so BatchNorm is really tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def export(model, name, preserve_batchnorm, input_shape=INPUT):
    model.eval()
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(1))
    path = os.path.join(HERE, name + ".onnx")
    mode = torch.onnx.TrainingMode.PRESERVE if preserve_batchnorm else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=OPSET, training=mode,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5), f"{name}: torch and ONNX Runtime disagree"
    write_reference(name, x.numpy(), got)
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print(f"{name}.onnx: {os.path.getsize(path)} bytes, ops {', '.join(ops)}")


def write_reference(name, x, y):
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump({"input_shape": list(x.shape), "input": [float(v) for v in x.ravel()],
                   "output_shape": list(y.shape), "output": [float(v) for v in y.ravel()]}, f)


def tiny_graph(name, nodes, initializers, inputs, outputs, opset=OPSET):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_fixtures.py")
    model.ir_version = 8
    onnx.save(model, os.path.join(HERE, name + ".onnx"))


def bad_models():
    """Models the importer must refuse with one clear error line each."""
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, ["batch", 4])
    y = helper.make_tensor_value_info("y", f, ["batch", 2])
    w = helper.make_tensor("fc.weight", f, [2, 4], np.arange(8, dtype=np.float32).tolist())
    gemm = helper.make_node("Gemm", ["x", "fc.weight"], ["h"], name="/fc/Gemm", transB=1)
    # An operator PruneKit does not read.
    tiny_graph("bad_unsupported_op", [gemm, helper.make_node("Softsign", ["h"], ["y"], name="/act/Softsign")], [w], [x], [y])
    # Two inputs.
    x2 = helper.make_tensor_value_info("x2", f, ["batch", 4])
    tiny_graph("bad_two_inputs", [helper.make_node("Add", ["x", "x2"], ["s"], name="/add/Add"),
                                  helper.make_node("Gemm", ["s", "fc.weight"], ["y"], name="/fc/Gemm", transB=1)],
               [w], [x, x2], [y])
    # A NaN weight.
    nan = helper.make_tensor("fc.weight", f, [2, 4], [0, 1, float("nan"), 3, 4, 5, 6, 7])
    tiny_graph("bad_nan_weight", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="/fc/Gemm", transB=1)], [nan], [x], [y])
    # Symbolic height and width.
    img = helper.make_tensor_value_info("x", f, ["batch", 3, "height", "width"])
    k = helper.make_tensor("conv.weight", f, [2, 3, 1, 1], [0.5] * 6)
    out = helper.make_tensor_value_info("y", f, ["batch", 2, "height", "width"])
    tiny_graph("bad_dynamic_shape", [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv")], [k], [img], [out])
    # Attributes that would overflow shape arithmetic: a huge group, a huge padding.
    tiny_graph("bad_huge_group", [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv", group=2**62)],
               [k], [helper.make_tensor_value_info("x", f, ["batch", 3, 8, 8])], [out])
    tiny_graph("bad_huge_padding", [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv", pads=[2**62] * 4)],
               [k], [helper.make_tensor_value_info("x", f, ["batch", 3, 8, 8])], [out])
    # An opset from the future.
    tiny_graph("bad_opset", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="/fc/Gemm", transB=1)], [w], [x], [y], opset=99)


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        resnet = TinyResNet(); randomize_batchnorm(resnet, g)
        vgg = TinyVGG(); randomize_batchnorm(vgg, g)
        mobilenet = TinyMobileNet(); randomize_batchnorm(mobilenet, g)
        mnist = MnistCNN(); randomize_batchnorm(mnist, g)
    export(resnet, "tiny_resnet", preserve_batchnorm=True)
    export(resnet, "tiny_resnet_folded", preserve_batchnorm=False)
    export(vgg, "tiny_vgg_bn", preserve_batchnorm=True)
    export(mobilenet, "tiny_mobilenet", preserve_batchnorm=True)
    export(mnist, "mnist_cnn", preserve_batchnorm=True, input_shape=(2, 1, 28, 28))
    # The VGG again with its tensors in a side file, as torch and onnx write models over 2 GB
    # (external data); its reference outputs are tiny_vgg_bn.json's.
    side = os.path.join(HERE, "external_vgg.onnx.data")
    if os.path.exists(side):
        os.remove(side)                           # onnx.save_model refuses to overwrite it
    onnx.save_model(onnx.load(os.path.join(HERE, "tiny_vgg_bn.onnx")), os.path.join(HERE, "external_vgg.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=True, location="external_vgg.onnx.data",
                    size_threshold=1024)
    bad_models()


if __name__ == "__main__" and sys.argv[1:] != ["graphs"]:
    main()


# ---------------------------------------------------------------------------------------------
# The graph families of issue 11: concatenation (DenseNet), squeeze-and-excitation with SiLU and
# Sigmoid (EfficientNet's MBConv) and grouped convolution (ResNeXt), at small widths, built from
# torchvision's own classes. Run `make_fixtures.py graphs` to write only these.

GRAPH_INPUT = (2, 3, 16, 16)


def tiny_densenet():
    """torchvision's DenseNet with growth 4, two dense blocks of two layers, 8 initial features."""
    from torchvision.models import DenseNet
    return DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, drop_rate=0, num_classes=10)


def tiny_efficientnet():
    """torchvision's EfficientNet with three small MBConv stages (depthwise 3x3 and 5x5, SE, SiLU)."""
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig
    setting = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 2), MBConvConfig(4, 5, 2, 16, 16, 1)]
    return EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=10)


class TinyResNeXt(nn.Module):
    """A stem and two of torchvision's ResNeXt bottlenecks (grouped 3x3, 4 groups), identity and projection shortcuts.

    torchvision's ResNet class fixes its stage widths at 64-2048; the blocks are its own.
    """

    def __init__(self, classes=10):
        super().__init__()
        from torchvision.models.resnet import Bottleneck
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        # width = planes * base_width / 64 * groups: 4 * 64/64 * 4 = 16 and 8 * 64/64 * 4 = 32.
        self.layer1 = Bottleneck(16, 4, groups=4, base_width=64)
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.layer2 = Bottleneck(16, 8, stride=2, downsample=down, groups=4, base_width=64)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def graph_fixtures():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    for name, make in [("tiny_densenet", tiny_densenet), ("tiny_efficientnet", tiny_efficientnet),
                       ("tiny_resnext", TinyResNeXt)]:
        with torch.no_grad():
            model = make()
            randomize_batchnorm(model, g)
        export(model, name, preserve_batchnorm=True, input_shape=GRAPH_INPUT)
    # Mul of two feature maps (not squeeze-and-excitation's [N, C, 1, 1] gate, not SiLU): refused.
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, ["batch", 2, 4, 4])
    y = helper.make_tensor_value_info("y", f, ["batch", 2, 4, 4])
    k = helper.make_tensor("conv.weight", f, [2, 2, 1, 1], [0.5, -1, 2, 0.25])
    tiny_graph("bad_elementwise_mul", [helper.make_node("Conv", ["x", "conv.weight"], ["h"], name="/conv/Conv"),
                                       helper.make_node("Mul", ["h", "x"], ["y"], name="/gate/Mul")], [k], [x], [y])


if __name__ == "__main__" and sys.argv[1:] == ["graphs"]:
    graph_fixtures()
