#!/usr/bin/env bash
# `trinity bench train`: the JSON report's memory (every planned component, adding up to the plan; the STE
# run's own components and peak RSS with --quant), the memory-lean overrides, --ste-only, and bad input.
source "$(dirname "$0")/helpers/train_common.sh"

"$T" bench train --preset tiny --batch 2 --seq-len 32 --steps 1 --quant ternary --json optim.state_bits=8 \
  train.recompute=layer quant.shadow=bf16 > "$w/both.json" 2> "$w/err" || { cat "$w/err"; fail "bench train --quant"; }
"$T" bench train --preset tiny --batch 2 --seq-len 32 --steps 1 --quant ternary --ste-only --json \
  > "$w/ste.json" 2> "$w/err" || { cat "$w/err"; fail "bench train --ste-only"; }
"$PY" - "$w/both.json" "$w/ste.json" <<'PY'
import json, sys
both, ste = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
parts = ("params_bytes", "grads_bytes", "adam_bytes", "activation_bytes", "sampler_bytes", "method_state_bytes",
         "teacher_bytes", "workspace_bytes")
def check(mem, name):
    total = sum(mem.get(k, 0) for k in parts)
    assert total == mem["planned_bytes"], (name, total, mem)
    if mem.get("ste_shadow") == "bf16":
        st = sum(mem[k] for k in ("ste_shadow_bytes", "ste_grad_bytes", "ste_scratch_bytes", "ste_moment_bytes"))
        assert st == mem["method_state_bytes"], (name, st, mem)
    elif "ste_shadow" in mem:
        st = sum(mem[k] for k in ("ste_wq_bytes", "ste_idx_bytes", "ste_scratch_bytes"))
        assert st == mem["method_state_bytes"], (name, st, mem)
check(both["memory"], "dense")
check(both["ste_memory"], "ste (lean)")
check(ste["memory"], "ste only")
assert both["method"] == "dense" and ste["method"] == "ste", (both["method"], ste["method"])
assert both["memory"]["state_bits"] == 8 and both["ste_memory"]["ste_shadow"] == "bf16", both
assert ste["memory"]["ste_shadow"] == "fp32" and ste["memory"]["state_bits"] == 32, ste
assert both["ste_memory"]["method_state_bytes"] < ste["memory"]["method_state_bytes"] + ste["memory"]["params_bytes"]
for j, k in ((both, "peak_rss_bytes"), (both, "ste_peak_rss_bytes"), (ste, "peak_rss_bytes")):
    assert j[k] > 0, (k, j)
print("dense + lean STE: planned", both["planned_bytes"], "/", both["ste_planned_bytes"], "bytes; peak RSS",
      both["peak_rss_bytes"], "/", both["ste_peak_rss_bytes"])
PY
expect_usage() {
  set +e; "$@" > "$w/out" 2> "$w/err"; local rc=$?; set -e
  [ $rc -eq 2 ] || { cat "$w/err"; fail "usage error: exit $rc, expected 2"; }
  echo "ok: usage: $(head -1 "$w/err")"
}
expect_usage "$T" bench train --preset tiny --ste-only
expect_fail "quant override without --quant" "$T" bench train --preset tiny --steps 1 quant.shadow=bf16
expect_fail "state_bits = 7" "$T" bench train --preset tiny --steps 1 optim.state_bits=7
expect_fail "unknown preset" "$T" bench train --preset huge
echo PASS
