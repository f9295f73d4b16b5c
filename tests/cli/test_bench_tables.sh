#!/usr/bin/env bash
# trinity bench decode / prefill with quantized tables: the random preset model built with --head / --embed
# q8 and q4 runs, says what it ran, and reads fewer bytes per token than with F16 tables (by exactly the
# head's bytes); usage errors exit 2.
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
PY=${TN_PYTHON:-/usr/bin/python3}
W=$(mktemp -d /tmp/tn_cli_bench_tables.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() { # NAME ARGS...: a bench as JSON into $W/NAME.json
    local name=$1
    shift
    "$TRINITY" bench "$@" --json >"$W/$name.json" 2>"$W/err" || { fail "bench $*: $(head -3 "$W/err")"; }
}
run d16 decode --preset tiny --tokens 4 --threads 1
run d8 decode --preset tiny --tokens 4 --threads 1 --head q8 --embed q8
run d4 decode --preset tiny --tokens 4 --threads 1 --head q4 --embed q4
run p8 prefill --preset tiny --prompt 40 --threads 1 --head q8 --embed q4
"$PY" - "$W" <<'PY' || fail "bench JSON"
import json, sys
d = {k: json.loads(open(f"{sys.argv[1]}/{k}.json").read()) for k in ("d16", "d8", "d4", "p8")}
V, D = 1024, 256                      # the tiny preset's vocabulary and width
f16, q8, q4 = V * D * 2, V * D + 4 * V, V * (D // 32) * 18
assert "head F16" in d["d16"]["model"] and "embed Q8, head Q8" in d["d8"]["model"], d["d8"]["model"]
assert "embed Q4, head Q4" in d["d4"]["model"] and "embed Q4, head Q8" in d["p8"]["model"], d["p8"]["model"]
# bytes per decoded token count the head, not the embedding row
assert d["d16"]["bytes_per_token"] - d["d8"]["bytes_per_token"] == f16 - q8, (d["d16"]["bytes_per_token"], d["d8"]["bytes_per_token"])
assert d["d16"]["bytes_per_token"] - d["d4"]["bytes_per_token"] == f16 - q4
for k in ("d8", "d4"):
    assert d[k]["tok_s"] > 0 and d[k]["bound_tok_s"] > 0 and d[k]["ratio"] > 0
assert d["p8"]["tok_s"] > 0 and d["p8"]["prompt"] == 40
print("ok: bytes per token F16 %d, Q8 %d, Q4 %d" % (d["d16"]["bytes_per_token"], d["d8"]["bytes_per_token"], d["d4"]["bytes_per_token"]))
PY

# usage errors
"$TRINITY" bench decode --model x.trin --head q8 >/dev/null 2>"$W/err"
[ $? = 2 ] || fail "--head with --model: not a usage error"
"$TRINITY" bench prefill --preset tiny --embed q3 >/dev/null 2>"$W/err"
[ $? = 2 ] || fail "--embed q3: not a usage error"
grep -q "unknown table type 'q3'" "$W/err" || fail "--embed q3 message: $(cat "$W/err")"

[ "$fails" = 0 ] && echo "test_bench_tables: all passed"
exit $((fails > 0))
