#!/usr/bin/env bash
# trinity's LoRA adapters against the real Hugging Face `peft` (docs/LORA.md, "PEFT interoperability"), on a
# tiny Llama with an STE ternary base; transformers runs the base as trinity's dense HF export of the base
# the adapters see (the snapped weights: `trinity merge --strength 0 --dense`), in float32:
#   - trinity -> peft: an adapter trained by `trinity train` ([lora], rank 4 on q_proj, v_proj, down_proj of
#     layer 1) loads with `PeftModel.from_pretrained`, every tensor of the file into its module and no module
#     left without one, and gives the logits of the HF export of `trinity merge --dense` (1e-5 relative);
#   - peft -> trinity: an adapter made by peft (`LoraConfig` on k_proj, o_proj, gate_proj, up_proj of layer 0,
#     random A and B, `save_pretrained`) merged by `trinity merge --dense` and exported gives the logits of
#     peft's `merge_and_unload()` (1e-5 relative); `[lora] init` from it trains, its first loss equal to
#     peft's loss on the same batch, and the adapter the run writes loads back into peft;
#   - PEFT options with no trinity counterpart (per-module rank or alpha, layer replication, rsLoRA, DoRA,
#     fan_in_fan_out, bias training) are refused: one error line, exit 1, no output.
# Skips (77) when transformers or peft is missing for $TN_PYTHON (scripts/setup.sh installs them into .venv).
source "$(dirname "$0")/helpers/train_common.sh"
"$PY" -c "import peft, transformers" 2>/dev/null ||
  { echo "SKIPPED: peft/transformers are not installed for $PY (scripts/setup.sh installs them into .venv)"; exit 77; }

# one batch of 4 windows of 32 tokens: the first training batch of a run and `trinity eval`'s windows alike
"$PY" "$here/helpers/make_pattern_shard.py" "$w/batch.h5" 129 64 3

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 96
tied_embeddings = false
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 4
seq_len = 32
steps = 4
threads = 2
[optim]
lr = 3e-3
INI
"$T" train "$w/base.ini" "train.out_dir=$w/ste" quant.grid=ternary 2> "$w/ste.err" || { cat "$w/ste.err"; fail "STE base"; }
base=$w/ste/ckpt-000004.h5

# hf_of CKPT ADAPTER STRENGTH DIR: the HF export (f32) of the dense merge
hf_of() {
  "$T" merge "$1" "$2" -o "$w/dense.h5" --strength "$3" --dense > /dev/null 2> "$w/err" || { cat "$w/err"; fail "merge $2"; }
  "$T" export "$w/dense.h5" -o "$4" --format hf --hf-dtype f32 > /dev/null 2> "$w/err" || { cat "$w/err"; fail "export $4"; }
  rm "$w/dense.h5"
}

# ---- trinity -> peft ----
cat > "$w/lora.ini" <<INI
[model]
init = $base
[data]
train = $w/train.h5
[train]
batch = 4
seq_len = 32
steps = 4
ckpt_every = 4
threads = 2
[optim]
lr = 1e-2
weight_decay = 0
[lora]
rank = 4
alpha = 6
dropout = 0
layers = q_proj,v_proj,down_proj,1
INI
"$T" train "$w/lora.ini" "train.out_dir=$w/l1" 2> "$w/l1.err" || { cat "$w/l1.err"; fail "LoRA run"; }
hf_of "$base" "$w/l1/adapter" 0 "$w/hf-base"
hf_of "$base" "$w/l1/adapter" 1 "$w/hf-merged"

cat > "$w/common.py" <<'PY'
import warnings
import numpy as np, torch, h5py
import peft, transformers
from peft.utils import load_peft_weights
warnings.filterwarnings("error", message=".*(missing|unexpected|[Ff]ound missing adapter).*")

def llama(path):
    m = transformers.LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return m.eval()

def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.double().numpy()

def rel(a, b):  # largest difference relative to the largest logit
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

def check_loaded(model, adir, name="default"):
    """Every tensor of ADIR's file sits, bit for bit, in the module peft gave it; no LoRA module lacks one."""
    file = load_peft_weights(adir)
    sd = model.state_dict()
    lora = {k for k in sd if ".lora_A." in k or ".lora_B." in k}
    used = set()
    for k, v in file.items():
        key = k.replace(".weight", f".{name}.weight")
        assert key in sd, f"{k}: no such module in the peft model"
        assert torch.equal(sd[key], v.to(sd[key].dtype)), k
        used.add(key)
    assert used == lora, f"modules without a tensor: {sorted(lora - used)}"
    return len(file)

def batch_ids(path):  # the 4 windows of 32 tokens (+1 target) of the one-batch shard
    t = h5py.File(path, "r")["tokens"][()].astype(np.int64)
    return np.stack([t[32 * b:32 * b + 33] for b in range(4)])

def loss(model, win):
    with torch.no_grad():
        lg = model(input_ids=torch.tensor(win[:, :-1])).logits.double()
    return float(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), torch.tensor(win[:, 1:]).reshape(-1)))
PY

"$PY" - "$w" "$w/l1/adapter" <<'PY' || fail "trinity -> peft"
import sys
sys.path.insert(0, sys.argv[1])
from common import *
w, adir = sys.argv[1:3]
ids = np.random.default_rng(7).integers(0, 64, size=(3, 32)).tolist()
base = llama(w + "/hf-base")
want_base = logits(base, ids)
model = peft.PeftModel.from_pretrained(base, adir).eval()
n = check_loaded(model, adir)
cfg = model.peft_config["default"]
assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, set(cfg.target_modules), cfg.layers_to_transform) == \
    (4, 6, 0.0, {"q_proj", "v_proj", "down_proj"}, [1]), cfg
assert cfg.use_rslora is False and cfg.fan_in_fan_out is False and cfg.bias == "none", cfg
got = logits(model, ids)
want = logits(llama(w + "/hf-merged"), ids)
r, moved = rel(got, want), rel(want_base, want)
print(f"trinity -> peft: {n} tensors loaded; PeftModel logits vs trinity's dense merge: {r:.2e} relative "
      f"(the adapter itself moves them {moved:.2e})")
assert r <= 1e-5 and moved > 1e-3, (r, moved)
PY

# ---- peft -> trinity ----
"$PY" - "$w" <<'PY' || fail "peft adapter"
import sys
sys.path.insert(0, sys.argv[1])
from common import *
w = sys.argv[1]
torch.manual_seed(11)
cfg = peft.LoraConfig(r=3, lora_alpha=5, lora_dropout=0.0, target_modules=["k_proj", "o_proj", "gate_proj", "up_proj"],
                      layers_to_transform=[0], task_type="CAUSAL_LM")
model = peft.get_peft_model(llama(w + "/hf-base"), cfg)
with torch.no_grad():
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            p.copy_(0.2 * torch.randn_like(p))
model.save_pretrained(w + "/pa")
model.eval()
ids = np.random.default_rng(7).integers(0, 64, size=(3, 32)).tolist()
np.save(w + "/pa-batch-loss.npy", np.array([loss(model, batch_ids(w + "/batch.h5"))]))
np.save(w + "/pa-peft.npy", logits(model, ids))
np.save(w + "/pa-merged.npy", logits(model.merge_and_unload(), ids))
PY
hf_of "$base" "$w/pa" 1 "$w/hf-pa"
"$PY" - "$w" <<'PY' || fail "peft -> trinity"
import sys
sys.path.insert(0, sys.argv[1])
from common import *
w = sys.argv[1]
ids = np.random.default_rng(7).integers(0, 64, size=(3, 32)).tolist()
got = logits(llama(w + "/hf-pa"), ids)
want, unmerged = np.load(w + "/pa-merged.npy"), np.load(w + "/pa-peft.npy")
r, r2 = rel(got, want), rel(got, unmerged)
print(f"peft -> trinity: trinity merge --dense of peft's adapter vs merge_and_unload: {r:.2e} relative, "
      f"vs the unmerged PeftModel {r2:.2e}")
assert r <= 1e-5 and r2 <= 1e-5, (r, r2)
PY

# [lora] init from peft's adapter: the first loss is peft's on the same batch; the written adapter loads back
grep -v '^rank\|^alpha\|^layers' "$w/lora.ini" > "$w/lora-init.ini"
"$T" train "$w/lora-init.ini" "train.out_dir=$w/li" "lora.init=$w/pa" "data.train=$w/batch.h5" train.steps=1 \
  train.ckpt_every=0 2> "$w/li.err" || { cat "$w/li.err"; fail "[lora] init from peft's adapter"; }
"$PY" - "$w" "$w/li/log.jsonl" <<'PY' || fail "[lora] init"
import json, sys
sys.path.insert(0, sys.argv[1])
from common import *
w = sys.argv[1]
first = next(json.loads(l) for l in open(sys.argv[2]) if '"loss"' in l)
want = float(np.load(w + "/pa-batch-loss.npy")[0])
r = abs(first["loss"] - want) / want
model = peft.PeftModel.from_pretrained(llama(w + "/hf-base"), w + "/li/adapter")
n = check_loaded(model, w + "/li/adapter")
cfg = model.peft_config["default"]
assert (cfg.r, cfg.lora_alpha, set(cfg.target_modules), cfg.layers_to_transform) == \
    (3, 5, {"k_proj", "o_proj", "gate_proj", "up_proj"}, [0]), cfg
print(f"[lora] init: first loss {first['loss']:.6f}, peft's on the same batch {want:.6f} ({r:.1e} relative); "
      f"the run's adapter ({n} tensors) loads back into peft")
assert r <= 1e-5, (first, want)
PY

# PEFT options trinity cannot express are refused, not silently dropped: one error line, exit 1, no output
for opt in '"alpha_pattern": {"k_proj": 20}' '"rank_pattern": {"k_proj": 2}' '"layer_replication": [[0, 2]]' \
           '"use_rslora": true' '"use_dora": true' '"fan_in_fan_out": true' '"lora_bias": true' '"bias": "all"'; do
  rm -rf "$w/bad" && cp -r "$w/pa" "$w/bad"
  "$PY" - "$w/bad/adapter_config.json" "{$opt}" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(json.loads(sys.argv[2]))
json.dump(c, open(sys.argv[1], "w"))
PY
  expect_fail "$opt" "$T" merge "$base" "$w/bad" -o "$w/bad.h5" --dense
  [ ! -e "$w/bad.h5" ] || fail "$opt: a failed merge wrote its output"
done
echo "PASS"
