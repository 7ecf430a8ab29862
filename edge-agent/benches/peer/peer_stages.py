"""Per-stage timings of the Python peer's pipeline (Pillow decode, Pillow resize,
LiteRT/XNNPACK invoke), measured the way edge-agent measures its own, so the
benchmark can print them side by side. Run by the peer benchmark
(`cargo bench -p edge-agent --bench peer`); prints one JSON line.

usage: peer_stages.py MODEL INPUT_TENSOR_F32 ROUNDS IMAGE...
"""
import json, sys, time

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter

model, tensor_path, rounds, images = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] * 1000.0


interp = Interpreter(model_path=model, num_threads=1)
interp.allocate_tensors()
inp = interp.get_input_details()[0]
h, w = int(inp["shape"][1]), int(inp["shape"][2])
x = np.fromfile(tensor_path, dtype="<f4").reshape((1, h, w, 3))
interp.set_tensor(inp["index"], x)
for _ in range(10):
    interp.invoke()
infer = []
for _ in range(rounds * len(images)):
    t = time.perf_counter()
    interp.invoke()
    infer.append(time.perf_counter() - t)

decode, resize = [], []
for _ in range(rounds):
    for f in images:
        t0 = time.perf_counter()
        im = Image.open(f).convert("RGB")
        t1 = time.perf_counter()
        np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0
        t2 = time.perf_counter()
        decode.append(t1 - t0)
        resize.append(t2 - t1)

print(json.dumps({
    "inference_p50_ms": pct(infer, 50), "inference_p99_ms": pct(infer, 99),
    "decode_p50_ms": pct(decode, 50), "decode_p99_ms": pct(decode, 99),
    "resize_p50_ms": pct(resize, 50), "resize_p99_ms": pct(resize, 99),
}))
