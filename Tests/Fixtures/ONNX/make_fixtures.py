#!/usr/bin/env python3
"""Writes the ONNX fixtures of PruneKit's ONNX tests, and their reference outputs.

Run by hand (the outputs are committed), from anywhere:

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install torch torchvision onnx onnxruntime numpy
    /tmp/fixtures-venv/bin/python Tests/Fixtures/ONNX/make_fixtures.py        # all of them
    /tmp/fixtures-venv/bin/python Tests/Fixtures/ONNX/make_fixtures.py ops    # only ops_fixtures()

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
    ops_fixtures()


class TinyOps(nn.Module):
    """Every element-wise and spatial operator of the importer at small width: LeakyReLU, GELU (Erf
    pattern), HardSwish, Tanh, HardSigmoid; a zero Pad folded into a conv with a non-square kernel
    and per-axis strides; dilation; MaxPool with ceil_mode; a Pad before a max pool (a zero-pad
    layer); AveragePool with non-square windows, ceil_mode and count_include_pad=False; a 1x3 conv;
    ReduceMean over H,W (keepdims 1), Squeeze, Unsqueeze and Flatten before the classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))                      # left, right, top, bottom
        self.conv1 = nn.Conv2d(3, 12, (3, 2), stride=(2, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.act1 = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(12, 16, 3, padding=2, dilation=2)
        self.act2 = nn.GELU()
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.conv3 = nn.Conv2d(16, 16, (1, 3), padding=(0, 1), bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.act3 = nn.Hardswish()
        self.pad2 = nn.ZeroPad2d((1, 0, 1, 0))
        self.pool2 = nn.MaxPool2d(2, stride=1)
        self.conv4 = nn.Conv2d(16, 16, 3, padding=1)
        self.act4 = nn.Tanh()
        self.pool3 = nn.AvgPool2d((2, 3), stride=2, padding=(0, 1), ceil_mode=True, count_include_pad=False)
        self.conv5 = nn.Conv2d(16, 12, 1)
        self.act5 = nn.Hardsigmoid()
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(self.pad(x))))   # 17x17 -> 8x16
        x = self.pool1(self.act2(self.conv2(x)))          # 8x16 -> 5x9 (partial windows)
        x = self.act3(self.bn3(self.conv3(x)))            # 5x9
        x = self.pool2(self.pad2(x))                      # 6x10 -> 5x9
        x = self.act4(self.conv4(x))                      # 5x9
        x = self.act5(self.conv5(self.pool3(x)))          # 3x5 (partial windows)
        x = x.mean(dim=(2, 3), keepdim=True).squeeze(3).squeeze(2)
        return self.fc(torch.flatten(x.unsqueeze(2), 1))


def fold_constants(name):
    """Evaluates every node whose inputs are all constants (onnx's reference evaluator) and keeps
    its outputs as initialisers. torch writes the pads of F.pad / nn.ZeroPad2d as a computed
    chain (ConstantOfShape, Concat, Slice with step -1, Transpose, Reshape, Cast) that its own
    constant folding leaves; onnx-simplifier does the same as this for a user's model. Constant
    nodes that other nodes read stay as they are."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator
    path = os.path.join(HERE, name + ".onnx")
    model = onnx.load(path)
    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        if all(i == "" or i in known for i in node.input):
            if node.op_type == "Constant":        # kept as a node: the importer reads those too
                known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
                kept.append(node)
                continue
            else:
                feeds = {i: known[i] for i in node.input if i}
                sub = helper.make_model(helper.make_graph([node], "fold",
                                                          [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(known[i].dtype), known[i].shape) for i in feeds],
                                                          [helper.make_value_info(o, onnx.TypeProto()) for o in node.output]),
                                        opset_imports=model.opset_import)
                outs = ReferenceEvaluator(sub).run(None, feeds)
            for o, v in zip(node.output, outs):
                known[o] = np.asarray(v)
                graph.initializer.append(numpy_helper.from_array(np.asarray(v), o))
        else:
            kept.append(node)
    used = {i for n in kept for i in n.input}
    kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(kept)
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    onnx.save(model, path)


def reference_outputs(name, x):
    """Runs NAME.onnx in ONNX Runtime on x and writes NAME.json."""
    path = os.path.join(HERE, name + ".onnx")
    onnx.checker.check_model(onnx.load(path))
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    write_reference(name, x, got)
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print(f"{name}.onnx: {os.path.getsize(path)} bytes, ops {', '.join(ops)}")


def ops_fixtures():
    """tiny_ops (torch, opset 17) and graphs written with the onnx helper API for the forms torch
    does not write at opset 17: a Gelu node (opset 20, both approximations), Conv with auto_pad
    SAME_UPPER / SAME_LOWER, AveragePool with count_include_pad=1 and ceil_mode, ReduceMean with
    keepdims 0; and the malformed forms the importer must refuse."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model = TinyOps(); randomize_batchnorm(model, g)
    export(model, "tiny_ops", preserve_batchnorm=True)
    fold_constants("tiny_ops")
    reference_outputs("tiny_ops", torch.randn(*INPUT, generator=torch.Generator().manual_seed(1)).numpy())

    f = TensorProto.FLOAT
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)

    def w(name, *shape):
        return helper.make_tensor(name, f, list(shape), (rng.standard_normal(shape) * 0.3).astype(np.float32).ravel().tolist())

    inp = helper.make_tensor_value_info("input", f, ["batch", 3, 9, 8])
    out = helper.make_tensor_value_info("logits", f, ["batch", 5])
    nodes = [
        # SAME_UPPER with an even kernel: total padding 1, the extra row and column at the end.
        helper.make_node("Conv", ["input", "c1.weight", "c1.bias"], ["a"], name="/c1/Conv", auto_pad="SAME_UPPER", kernel_shape=[2, 2]),
        helper.make_node("Gelu", ["a"], ["b"], name="/act1/Gelu"),
        # SAME_LOWER, stride 2 on 9x8: total padding 2 and 1, the extra at the start.
        helper.make_node("Conv", ["b", "c2.weight"], ["c"], name="/c2/Conv", auto_pad="SAME_LOWER", kernel_shape=[3, 2], strides=[2, 2]),
        helper.make_node("Gelu", ["c"], ["d"], name="/act2/Gelu", approximate="tanh"),
        helper.make_node("AveragePool", ["d"], ["e"], name="/pool/AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
        helper.make_node("Conv", ["e", "c3.weight"], ["h"], name="/c3/Conv", pads=[0, 1, 1, 0], kernel_shape=[2, 2]),
        helper.make_node("ReduceMean", ["h"], ["m"], name="/mean/ReduceMean", axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    inits = [w("c1.weight", 8, 3, 2, 2), w("c1.bias", 8), w("c2.weight", 8, 8, 3, 2), w("c3.weight", 6, 8, 2, 2),
             w("fc.weight", 5, 6), w("fc.bias", 5)]
    # ReduceMean takes its axes as an attribute up to opset 17 and as an input from 18: opset 20
    # needs the input form.
    nodes[6] = helper.make_node("ReduceMean", ["h", "mean_axes"], ["m"], name="/mean/ReduceMean", keepdims=0)
    inits.append(helper.make_tensor("mean_axes", TensorProto.INT64, [2], [2, 3]))
    tiny_graph("ops_opset20", nodes, inits, [inp], [out], opset=20)
    reference_outputs("ops_opset20", x)

    # Malformed forms, each refused with one clear error.
    v = helper.make_tensor_value_info("x", f, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("y", f, ["batch", 3, 4, 4])
    sqrt2 = helper.make_tensor("sqrt2", f, [], [2 ** 0.5])
    one = helper.make_tensor("one", f, [], [1.0])
    other = helper.make_tensor("other", f, [], [0.7])
    tiny_graph("bad_gelu_partial", [
        helper.make_node("Div", ["x", "sqrt2"], ["s"], name="/act/Div"),
        helper.make_node("Erf", ["s"], ["e"], name="/act/Erf"),
        helper.make_node("Add", ["e", "one"], ["p"], name="/act/Add"),
        helper.make_node("Mul", ["x", "p"], ["q"], name="/act/Mul"),
        helper.make_node("Mul", ["q", "other"], ["y"], name="/act/Mul_1"),
    ], [sqrt2, one, other], [v], [y])
    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    yp = helper.make_tensor_value_info("y", f, ["batch", 3, 6, 6])
    tiny_graph("bad_pad_reflect", [helper.make_node("Pad", ["x", "pads"], ["y"], name="/pad/Pad", mode="reflect")], [pads], [v], [yp])
    tiny_graph("bad_pad_value", [helper.make_node("Pad", ["x", "pads", "value"], ["y"], name="/pad/Pad")],
               [pads, helper.make_tensor("value", f, [], [1.5])], [v], [yp])
    channel_pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 1, 0, 0, 0, 1, 0, 0])
    tiny_graph("bad_pad_channels", [helper.make_node("Pad", ["x", "pads"], ["y"], name="/pad/Pad")], [channel_pads], [v],
               [helper.make_tensor_value_info("y", f, ["batch", 5, 4, 4])])


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


if __name__ == "__main__":
    if sys.argv[1:] == ["ops"]:
        ops_fixtures()      # only the fixtures of the element-wise and spatial operators
    elif sys.argv[1:] == ["graphs"]:
        graph_fixtures()    # only the graph families
    else:
        main()              # every fixture
        graph_fixtures()
