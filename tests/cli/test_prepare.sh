#!/bin/bash
# trinity prepare alpaca|text: happy paths (read back with h5py), --max-len counts, validation split,
# CRLF text equal to LF text, and every bad input the issue lists: malformed JSON (byte offset named),
# a record missing instruction/output, invalid UTF-8, an empty file, a tokenizer file that is not one.
# Each must print one "trinity: error:" line, exit 1 and leave no output (nor temporary) file.
set -u
T=${TN_TRINITY:?TN_TRINITY not set}
PY=${TN_PYTHON:-/usr/bin/python3}
SHARED=${TN_SHARED_DATA:-}
W=$(mktemp -d /tmp/tn_cli_prepare.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
expect_eq() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1: got [$2], want [$3]"; fi; }
# expect_fail NAME CODE PATTERN -- command...  (also: nothing but inputs left in $W/out)
expect_fail() {
    local name=$1 code=$2 pat=$3
    shift 4
    rm -rf "$W/out"; mkdir -p "$W/out"
    "$@" >"$W/stdout" 2>"$W/err"
    local rc=$?
    if [ $rc -ne "$code" ]; then bad "$name: exit $rc, want $code ($(cat "$W/err"))"
    elif [ "$code" -eq 1 ] && [ "$(wc -l <"$W/err")" -ne 1 ]; then bad "$name: $(wc -l <"$W/err") stderr lines"
    elif ! grep -q -- "$pat" "$W/err"; then bad "$name: stderr [$(cat "$W/err")] lacks [$pat]"
    elif [ -n "$(ls -A "$W/out")" ]; then bad "$name: left files behind: $(ls "$W/out")"
    else ok "$name"; fi
}

cat >"$W/a.json" <<'J'
[
  {"instruction": "Say hi.", "input": "", "output": "Hi!"},
  {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
  {"instruction": "Échange", "output": "naïve café ☕"}
]
J
$T prepare --help >/dev/null; expect_eq "help exits 0" $? 0
$T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/a.h5" >"$W/stdout"; expect_eq "alpaca bytes exit" $? 0
expect_eq "alpaca summary" "$(grep -c '3 examples' "$W/stdout")" "1"
"$PY" - "$W/a.h5" <<'P' && ok "alpaca shard via h5py" || bad "alpaca shard via h5py"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
assert f.attrs['format'] == 'trinity-shard' and f.attrs['kind'] == 'sft' and f.attrs['template'] == 'trinity'
assert int(f.attrs['vocab_size']) == 258 and int(f.attrs['eos_id']) == 257
t, m, o = f['tokens'][:], f['loss_mask'][:], f['doc_offsets'][:]
assert len(o) == 4 and o[0] == 0 and o[-1] == len(t)
d = t[o[1]:o[2]]; dm = m[o[1]:o[2]]
assert bytes(d[1:-1].astype(np.uint8)).decode() == 'Instruction: Add the numbers.\nInput: 2 and 3\nResponse: 5'
assert list(d[dm == 1]) == [ord('5'), 257], list(d[dm == 1])
assert f['tokens'].compression == 'gzip'
P

# --max-len: truncation and dropping counted
$T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/t.h5" --max-len 57 >"$W/stdout"
expect_eq "max-len truncates" "$(grep -o '[0-9]* truncated, [0-9]* dropped' "$W/stdout")" "2 truncated, 0 dropped"
$T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/t.h5" --max-len 50 --drop-long >"$W/stdout"
expect_eq "max-len drops" "$(grep -o '[0-9]* truncated, [0-9]* dropped' "$W/stdout")" "0 truncated, 2 dropped"
expect_fail "all dropped" 1 "no training example left" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5" --max-len 5 --drop-long

# usage errors
expect_fail "no kind" 2 "missing 'alpaca', 'chat' or 'text'" -- $T prepare
expect_fail "bad kind" 2 "unknown input kind" -- $T prepare csv --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5"
expect_fail "missing -o" 2 "missing -o" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json"
expect_fail "val fraction without val-out" 2 "needs --val-out" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5" --val-fraction 0.5
expect_fail "bad template" 2 "--template" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5" --template chatml
expect_fail "bad doc-split" 2 "--doc-split" -- $T prepare text --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5" --doc-split page
expect_fail "bad max-len" 2 "--max-len" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/out/x.h5" --max-len -3

# bad input: exit 1, one line, no file left
printf '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n' >"$W/broken.json"
expect_fail "malformed JSON names the byte offset" 1 "malformed JSON at byte [0-9]* (line 3" -- $T prepare alpaca --tokenizer bytes --in "$W/broken.json" -o "$W/out/x.h5"
printf '{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n' >"$W/l.jsonl"
$T prepare alpaca --tokenizer bytes --in "$W/l.jsonl" -o "$W/l.h5" >"$W/stdout"
expect_eq "JSON lines accepted" "$(grep -o '^[^:]*: [0-9]* examples' "$W/stdout" | grep -o '[0-9]* examples')" "2 examples"
printf '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"} x\n' >"$W/bad.jsonl"
expect_fail "JSON lines: garbage after an object" 1 "malformed JSON at byte 72 (line 2" -- $T prepare alpaca --tokenizer bytes --in "$W/bad.jsonl" -o "$W/out/x.h5"
printf '[{"instruction": "a", "output": "b"}] [' >"$W/trail.json"
expect_fail "text after the array" 1 "text after the top-level array" -- $T prepare alpaca --tokenizer bytes --in "$W/trail.json" -o "$W/out/x.h5"
printf '[{"instruction": "a", "output": "b"}, {"input": "x", "output": "y"}]' >"$W/noins.json"
expect_fail "record missing instruction" 1 'record 1: missing "instruction"' -- $T prepare alpaca --tokenizer bytes --in "$W/noins.json" -o "$W/out/x.h5"
printf '[{"instruction": "a", "input": "b"}]' >"$W/noout.json"
expect_fail "record missing output" 1 'record 0: missing "output"' -- $T prepare alpaca --tokenizer bytes --in "$W/noout.json" -o "$W/out/x.h5"
printf '[{"instruction": 5, "output": "b"}]' >"$W/nostr.json"
expect_fail "instruction not a string" 1 'is not a string' -- $T prepare alpaca --tokenizer bytes --in "$W/nostr.json" -o "$W/out/x.h5"
printf '[{"instruction": "caf\xe9", "output": "b"}]' >"$W/latin1.json"
expect_fail "invalid UTF-8 (alpaca)" 1 "invalid UTF-8 at byte 21 (line 1, column 22)" -- $T prepare alpaca --tokenizer bytes --in "$W/latin1.json" -o "$W/out/x.h5"
: >"$W/empty.json"
expect_fail "empty file (alpaca)" 1 "empty file" -- $T prepare alpaca --tokenizer bytes --in "$W/empty.json" -o "$W/out/x.h5"
printf '[]' >"$W/none.json"
expect_fail "no records" 1 "no records" -- $T prepare alpaca --tokenizer bytes --in "$W/none.json" -o "$W/out/x.h5"
printf '{"a": 1}' >"$W/obj.json"
expect_fail "not an array" 1 "missing \"instruction\"" -- $T prepare alpaca --tokenizer bytes --in "$W/obj.json" -o "$W/out/x.h5"
echo "not a tokenizer" >"$W/fake.model"
expect_fail "tokenizer that is not one" 1 "not a tokenizer" -- $T prepare alpaca --tokenizer "$W/fake.model" --in "$W/a.json" -o "$W/out/x.h5"
expect_fail "missing input" 1 "error" -- $T prepare alpaca --tokenizer bytes --in "$W/missing.json" -o "$W/out/x.h5"
expect_fail "unwritable output" 1 "error" -- $T prepare alpaca --tokenizer bytes --in "$W/a.json" -o "$W/out/no/such/dir/x.h5"
: >"$W/empty.txt"
expect_fail "empty file (text)" 1 "empty file" -- $T prepare text --tokenizer bytes --in "$W/empty.txt" -o "$W/out/x.h5"
printf 'ok\n\xff\xfe\n' >"$W/bad.txt"
expect_fail "invalid UTF-8 (text)" 1 "invalid UTF-8 at byte 3 (line 2" -- $T prepare text --tokenizer bytes --in "$W/bad.txt" -o "$W/out/x.h5"
printf '\n\n  \n' >"$W/blank.txt"
expect_fail "only blank lines" 1 "no text" -- $T prepare text --tokenizer bytes --in "$W/blank.txt" -o "$W/out/x.h5"

# text: CRLF == LF, documents at blank lines, several files
printf 'first doc line 1\nline 2\n\n\nsecond doc\n' >"$W/lf.txt"
printf 'first doc line 1\r\nline 2\r\n\r\n\r\nsecond doc\r\n' >"$W/crlf.txt"
$T prepare text --tokenizer bytes --in "$W/lf.txt" -o "$W/lf.h5" >/dev/null && $T prepare text --tokenizer bytes --in "$W/crlf.txt" -o "$W/crlf.h5" >/dev/null
expect_eq "text exit" $? 0
$T prepare text --tokenizer bytes --in "$W/lf.txt" "$W/crlf.txt" -o "$W/two.h5" --doc-split none >"$W/stdout"
expect_eq "two files, --doc-split none" "$(grep -o '[0-9]* documents' "$W/stdout")" "2 documents"
"$PY" - "$W/lf.h5" "$W/crlf.h5" <<'P' && ok "text shards: CRLF == LF, 2 docs, BOS/EOS" || bad "text shards"
import sys, h5py, numpy as np
a, b = (h5py.File(p, 'r') for p in sys.argv[1:3])
assert (a['tokens'][:] == b['tokens'][:]).all() and (a['doc_offsets'][:] == b['doc_offsets'][:]).all()
t, o, m = a['tokens'][:], a['doc_offsets'][:], a['loss_mask'][:]
assert list(o) == [0, 26, 39], list(o)
assert t[0] == 256 and t[25] == 257 and m[0] == 0 and m[1:26].all()
assert bytes(t[1:25].astype(np.uint8)) == b'first doc line 1\nline 2\n'
assert a.attrs['kind'] == 'text' and a.attrs['template'] == ''
P

if [ -n "$SHARED" ] && [ -f "$SHARED/alpaca/alpaca_data_first2000.json" ]; then
    M=$SHARED/llama-tokenizer/tokenizer.model
    $T prepare alpaca --tokenizer "$M" --in "$SHARED/alpaca/alpaca_data_first2000.json" -o "$W/tr.h5" \
        --val-fraction 0.1 --val-out "$W/va.h5" --seed 1 --template alpaca >"$W/stdout"
    expect_eq "alpaca 2000 with val split" "$(grep -o '[0-9]* examples' "$W/stdout" | tr '\n' ' ')" "1800 examples 200 examples "
    $T prepare text --tokenizer "$M" --in "$SHARED/wikitext2/wiki.test.raw" -o "$W/wiki.h5" --doc-split heading >"$W/stdout"
    expect_eq "wikitext by heading" "$(grep -o '[0-9]* documents' "$W/stdout")" "62 documents"
    "$PY" - "$W/tr.h5" "$W/va.h5" "$W/wiki.h5" <<'P' && ok "real shards via h5py" || bad "real shards via h5py"
import sys, h5py
tr, va, wk = (h5py.File(p, 'r') for p in sys.argv[1:4])
assert len(tr['doc_offsets']) == 1801 and len(va['doc_offsets']) == 1201 - 1000
assert tr.attrs['tokenizer_sha256'] == va.attrs['tokenizer_sha256'] == wk.attrs['tokenizer_sha256']
assert int(wk.attrs['bos_id']) == 1 and int(wk.attrs['eos_id']) == 2 and wk['tokens'][0] == 1
P
else
    echo "shared data absent: real-data parts skipped"
fi
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
