#!/usr/bin/env python3
"""Runs every NAME.onnx of a folder in ONNX Runtime on NAME.json's input and compares with
PruneKit's output there: max |ort - prunekit| <= 1e-4 * max |prunekit|. Called by .ci/onnx-check."""
import glob
import json
import os
import sys

import numpy as np
import onnxruntime as ort

folder = sys.argv[1]
files = sorted(glob.glob(os.path.join(folder, "*.onnx")))
options = ort.SessionOptions()
options.intra_op_num_threads = 2
passed, failed = 0, 0
for path in files:
    name = os.path.basename(path)[:-5]
    with open(os.path.join(folder, name + ".json")) as f:
        ref = json.load(f)
    x = np.array(ref["input"], dtype=np.float32).reshape(ref["input_shape"])
    expected = np.array(ref["output"], dtype=np.float32).reshape(ref["output_shape"])
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        error = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
        scale = float(np.max(np.abs(expected)))
        ok = error <= 1e-4 * scale
        detail = f"max error {error:.2e} at scale {scale:.2e}" if got.shape == expected.shape else f"shape {got.shape} != {expected.shape}"
    except Exception as e:  # a file ONNX Runtime refuses is a failure, not a crash of the check
        ok, detail = False, f"ONNX Runtime: {e}".splitlines()[0]
    passed, failed = passed + ok, failed + (not ok)
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
print(f"onnx-check: {passed} models agree with ONNX Runtime {ort.__version__}, {failed} do not")
sys.exit(0 if files and failed == 0 else 1)
