#!/usr/bin/env bash
# [train] tensorboard = true: the event file is read back by the tensorboard package's own reader (PyPI, in
# the project's .venv; skipped without it) and every scalar equals the log.jsonl value of the same step and
# key (float32); the reader's record iterator rejects a copy with one flipped byte in a record (the CRC-32Cs
# are real). scripts/plot.py draws the run into a PNG (skipped without matplotlib).
source "$(dirname "$0")/helpers/train_common.sh"
"$PY" -c "import tensorboard" 2>/dev/null || { echo "SKIPPED: the tensorboard package is missing for $PY (scripts/setup.sh installs it into .venv)"; exit 77; }

cat > "$w/run.ini" <<INI
[model]
dim = 32
n_layers = 1
n_heads = 2
ffn_dim = 64
[data]
train = $w/train.h5
val = $w/val.h5
[train]
out_dir = $w/R
batch = 2
seq_len = 16
steps = 8
eval_every = 4
eval_batches = 2
seed = 3
threads = 2
tensorboard = true
[optim]
method = primal
INI
"$T" train "$w/run.ini" 2> "$w/R.err" || { cat "$w/R.err"; fail "training with tensorboard"; }
ls "$w"/R/events.out.tfevents.* > /dev/null 2>&1 || fail "no event file in the run directory"

"$PY" - "$w/R" <<'PY'
import glob, json, math, os, shutil, struct, sys
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader, RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

run = sys.argv[1]
path = glob.glob(os.path.join(run, "events.out.tfevents.*"))[0]
# the records as written (simple_value), and as TensorBoard's own loader hands them to the UI (which turns
# simple_value into a scalar tensor)
events = [event_pb2.Event.FromString(b) for b in RawEventFileLoader(path).Load()]
assert events[0].file_version == "brain.Event:2", events[0]
tb, ui = {}, {}
for e in events[1:]:
    for v in e.summary.value:
        tb[(e.step, v.tag)] = v.simple_value
for e in list(EventFileLoader(path).Load())[1:]:
    for v in e.summary.value:
        ui[(e.step, v.tag)] = v.tensor.float_val[0]
assert ui == tb, "TensorBoard's loader reads other values"

def flat(o, prefix=""):
    for k, v in o.items():
        tag = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            yield from flat(v, tag)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
            yield tag, v

want = {}
for line in open(os.path.join(run, "log.jsonl")):
    o = json.loads(line)
    for tag, v in flat(o):
        want[(int(o.get("step", 0)), tag)] = v
assert set(want) == set(tb), (sorted(set(want) ^ set(tb)))[:10]
bad = [(k, want[k], tb[k]) for k in want if struct.unpack("<f", struct.pack("<f", want[k]))[0] != tb[k]]
assert not bad, bad[:5]
keys = {t for _, t in tb}
for k in ("loss", "lr", "val_loss", "flip_rate", "vote_rate"):
    assert k in keys, (k, sorted(keys))
print(f"tensorboard: {len(tb)} scalars over {len(events) - 1} events equal log.jsonl; tags {sorted(keys)[:8]}...")

# one flipped byte inside the last record's data: the record reader must refuse it
data = bytearray(open(path, "rb").read())
data[-10] ^= 0x20
bad_path = path + ".corrupt"
open(bad_path, "wb").write(bytes(data))
reader = PyRecordReader_New(bad_path, 0, "")
try:
    n = 0
    while True:
        reader.GetNext()
        n += 1
except errors.DataLossError as e:
    print(f"corrupted copy refused after {n} good records: {e}")
except errors.OutOfRangeError:
    sys.exit("the corrupted copy was read to the end: the CRCs were not checked")
os.remove(bad_path)
PY

if "$PY" -c "import matplotlib" 2>/dev/null; then
  "$PY" "$here/../../scripts/plot.py" "$w/R" -o "$w/R/curves.png" > "$w/plot.out" || { cat "$w/plot.out"; fail "plot.py"; }
  "$PY" -c 'import sys; b = open(sys.argv[1], "rb").read(8); assert b == b"\x89PNG\r\n\x1a\n", b' "$w/R/curves.png" || fail "plot.py wrote no PNG"
  echo "plot.py: $(cat "$w/plot.out")"
else
  echo "plot.py: skipped (matplotlib missing for $PY)"
fi
echo "all tensorboard checks passed"
