"""Where a traced training step spends its time: TensorFlow op time by op type, from profiler traces.

Reads every *.xplane.pb under DIR (written by `tfft.train --profile_batches=FIRST,LAST` into MODEL_DIR/logs/PHASE,
or by bench/keras_raw.py --profile_dir) and prints one JSON line: the op time per op type, its share of all op
time, and the share of the matrix multiplications (the FLOPs MFU counts) against everything else.

Usage: python bench/profile_summary.py DIR [--top=15]
"""

import argparse
import collections
import json
import pathlib
import re

# Op types that do the model's matrix multiplications (TF's own kernels and their oneDNN rewrites).
MATMUL = re.compile(r"(MatMul|Einsum|Conv2D)", re.IGNORECASE)


def op_times(path: pathlib.Path) -> collections.Counter:
  """Seconds per op type, summed over the executor's op events of the host plane (op name "scope/op:Type")."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  space.ParseFromString(path.read_bytes())
  seconds = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {i: m.name for i, m in plane.event_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        name = names.get(event.metadata_id, "")
        # Executor op events are "scope/name:Type"; function calls, steps and tf.data events are not.
        match = re.fullmatch(r"[^:\s]+:(_?[A-Z][A-Za-z0-9_]*)", name)
        if match:
          seconds[match.group(1)] += event.duration_ps / 1e12
  return seconds


def summarize(root: pathlib.Path, top: int = 15) -> dict:
  files = sorted(root.rglob("*.xplane.pb"))
  if not files:
    raise SystemExit(f"no *.xplane.pb under {root}: trace a run with tfft.train --profile_batches=FIRST,LAST")
  seconds = collections.Counter()
  for path in files:
    seconds.update(op_times(path))
  total = sum(seconds.values()) or 1.0
  matmul = sum(s for op, s in seconds.items() if MATMUL.search(op))
  return {"traces": [str(p) for p in files], "op_seconds": round(total, 3),
          "matmul_share": round(matmul / total, 3),
          "top_ops": [{"op": op, "seconds": round(s, 3), "share": round(s / total, 3)}
                      for op, s in seconds.most_common(top)]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("dir")
  parser.add_argument("--top", type=int, default=15)
  args = parser.parse_args()
  print(json.dumps(summarize(pathlib.Path(args.dir), args.top)))


if __name__ == "__main__":
  main()
