#!/usr/bin/env bash
# trinity export / info from the command line, on the shared tiny-random Llama (GGUF, 1 layer, dim 8, the
# real 32000-token Llama tokenizer) imported to a checkpoint: dense, F16 and synthetic-ternary exports;
# info on .trin, .h5, shard and .gguf (text and JSON); then damaged files: flipped bytes and truncations,
# each one clear error line and exit 1, never a crash; then usage errors (exit 2) and --help.
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
GGUF=${TN_SHARED_DATA:-/nonexistent}/tiny-random-llama-gguf/llama-2-tiny-random.gguf
if [ ! -r "$GGUF" ]; then
    echo "SKIPPED: $GGUF not found"
    exit 77
fi
PY=${TN_PYTHON:-/usr/bin/python3}
W=$(mktemp -d /tmp/tn_cli_trin.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE CMD...: run, compare the exit code; on failure show stderr
expect() {
    local want=$1
    shift
    "$@" >"$W/out" 2>"$W/err"
    local got=$?
    [ "$got" = "$want" ] || { fail "exit $got (want $want): $*"; sed 's/^/    /' "$W/err" | head -5; }
}
# one_error: stderr is exactly one line "trinity: error: ..."
one_error() {
    [ "$(wc -l <"$W/err")" = 1 ] && grep -q '^trinity: error: ' "$W/err" || { fail "not one error line: $*"; head -5 "$W/err"; }
}

expect 0 "$TRINITY" import "$GGUF" -o "$W/base.h5"
[ -s "$W/base.h5" ] || { echo "FAIL: import"; exit 1; }

# ---- export ----
expect 0 "$TRINITY" export "$W/base.h5" -o "$W/dense.trin"
grep -q 'F32 x12' "$W/out" || fail "dense export summary: $(cat "$W/out")"
expect 0 "$TRINITY" export "$W/base.h5" -o "$W/f16.trin" --dtype f16
expect 0 "$TRINITY" export "$W/base.h5" -o "$W/t2.trin" --quantize ternary --json
if "$PY" -c 1 2>/dev/null; then
    "$PY" - "$W/out" <<'PY' || fail "export --json"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["kind"] == "synthetic" and o["dtypes"]["T2"] == 7 and o["tensors"] == 12, o
PY
fi
[ "$(stat -c %s "$W/f16.trin")" -lt "$(stat -c %s "$W/dense.trin")" ] || fail "F16 export is not smaller"
ls "$W"/*.tmp.* >/dev/null 2>&1 && fail "temporary file left behind"

# ---- info ----
expect 0 "$TRINITY" info "$W/t2.trin"
grep -q 'TRIN v2' "$W/out" && grep -q 'model.layers.0.mlp.up_proj.weight *T2' "$W/out" && grep -q 'quant = ternary-absmean' "$W/out" ||
    fail "info t2.trin text: $(head -5 "$W/out")"
expect 0 "$TRINITY" info "$W/t2.trin" --json
[ "$(wc -l <"$W/out")" = 1 ] || fail "info --json is not one line"
if "$PY" -c 1 2>/dev/null; then
    "$PY" - "$W/out" <<'PY' || fail "info --json content"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["format"] == "trin" and o["version"] == 2 and o["config"]["rope_scaling"]["type"] == "default"
assert o["config"]["dim"] == 8 and o["config"]["vocab_size"] == 32000 and o["config"]["n_layers"] == 1
assert o["tokenizer"]["format"] == "trinity-tokenizer" and o["tokenizer"]["vocab_size"] == 32000
assert len(o["tensors"]) == 12 and sum(t["dtype"] == "T2" for t in o["tensors"]) == 7
assert all(t["offset"] % 64 == 0 for t in o["tensors"])
PY
fi
expect 0 "$TRINITY" info "$W/base.h5"
grep -q 'trinity checkpoint' "$W/out" && grep -q 'params/model.embed_tokens.weight' "$W/out" || fail "info checkpoint: $(head -3 "$W/out")"
expect 0 "$TRINITY" info "$W/base.h5" --json
expect 0 "$TRINITY" info "$GGUF"
grep -q 'GGUF v3' "$W/out" && grep -q 'token_embd.weight' "$W/out" || fail "info gguf"
expect 0 "$TRINITY" info "$GGUF" --json
TOKM=${TN_SHARED_DATA}/llama-tokenizer/tokenizer.model
if [ -r "$TOKM" ]; then
    printf 'Hello world.\n\nA second document here.\n' >"$W/doc.txt"
    if "$TRINITY" prepare text --tokenizer "$TOKM" --in "$W/doc.txt" -o "$W/shard.h5" >/dev/null 2>&1; then
        expect 0 "$TRINITY" info "$W/shard.h5"
        grep -q 'trinity shard, kind text' "$W/out" || fail "info shard: $(head -3 "$W/out")"
        expect 0 "$TRINITY" info "$W/shard.h5" --json
    fi
fi

# ---- damaged files: every case exit 1 with one error line (a crash would be 134/139) ----
size=$(stat -c %s "$W/t2.trin")
hsize=$(od -An -tu8 -j8 -N8 "$W/t2.trin" | tr -d ' ')
for off in 0 3 4 9 20 33 40 60 90 130 150 $((hsize - 60)) $((hsize - 2)) $((hsize + 5)) $((size / 3)) $((size / 2)) $((size - 100)) $((size - 1)); do
    cp "$W/t2.trin" "$W/bad.trin"
    printf '\x5a' | dd of="$W/bad.trin" bs=1 seek="$off" conv=notrunc status=none
    cmp -s "$W/t2.trin" "$W/bad.trin" && continue # the byte was already 0x5a
    expect 1 "$TRINITY" info "$W/bad.trin"
    one_error "flip at $off"
    expect 1 "$TRINITY" run "$W/bad.trin" -p hi -n 2
    one_error "run, flip at $off"
done
grep -q 'CRC mismatch' "$W/err" || fail "a data flip should read as a CRC mismatch: $(cat "$W/err")"
for len in 0 3 31 100 $((hsize - 1)) $hsize $((size / 2)) $((size - 1)); do
    head -c "$len" "$W/t2.trin" >"$W/short.trin"
    expect 1 "$TRINITY" info "$W/short.trin"
    one_error "truncated to $len"
done
grep -q 'truncated' "$W/err" || fail "truncation message: $(cat "$W/err")"
cp "$W/t2.trin" "$W/long.trin"
printf 'xx' >>"$W/long.trin"
expect 1 "$TRINITY" info "$W/long.trin"
one_error "trailing bytes"
printf 'not a model at all' >"$W/junk.bin"
expect 1 "$TRINITY" info "$W/junk.bin"
one_error "junk"
expect 1 "$TRINITY" info "$W/does-not-exist.trin"
expect 1 "$TRINITY" export "$W/junk.bin" -o "$W/x.trin"
one_error "export junk"
expect 1 "$TRINITY" export "$W/does-not-exist.h5" -o "$W/x.trin"
expect 1 "$TRINITY" export "$W/base.h5" -o "$W/no/such/dir/x.trin"
[ -e "$W/x.trin" ] && fail "a failed export left a file"

# ---- usage ----
expect 2 "$TRINITY" export "$W/base.h5"
expect 2 "$TRINITY" export -o "$W/x.trin"
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --dtype f8
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --quantize prime7
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --bogus
expect 2 "$TRINITY" export "$W/base.h5" -o
expect 2 "$TRINITY" info
expect 2 "$TRINITY" info a b
expect 2 "$TRINITY" info --bogus x
expect 0 "$TRINITY" export --help
grep -q 'usage: trinity export' "$W/out" || fail "export --help"
expect 0 "$TRINITY" info --help

[ "$fails" = 0 ] && echo "test_trin.sh: all passed" || echo "test_trin.sh: $fails failed"
[ "$fails" = 0 ]
