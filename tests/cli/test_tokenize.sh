#!/bin/bash
# trinity tokenize: encode/decode with bytes, SentencePiece and byte-level BPE tokenizers, --in files
# with CRLF, and the error paths (exit 1 with one "trinity: error:" line; usage errors exit 2).
set -u
T=${TN_TRINITY:?TN_TRINITY not set}
SHARED=${TN_SHARED_DATA:-}
W=$(mktemp -d /tmp/tn_cli_tokenize.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
expect_eq() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1: got [$2], want [$3]"; fi; }
# expect_fail NAME CODE PATTERN -- command...: exit code, exactly one stderr line, containing PATTERN
expect_fail() {
    local name=$1 code=$2 pat=$3
    shift 4
    "$@" >"$W/out" 2>"$W/err"
    local rc=$?
    local lines
    lines=$(wc -l <"$W/err")
    if [ $rc -ne "$code" ]; then bad "$name: exit $rc, want $code ($(cat "$W/err"))"
    elif [ "$code" -eq 1 ] && [ "$lines" -ne 1 ]; then bad "$name: $lines stderr lines"
    elif ! grep -q -- "$pat" "$W/err"; then bad "$name: stderr [$(cat "$W/err")] lacks [$pat]"
    else ok "$name"; fi
}

$T tokenize --help >/dev/null; expect_eq "help exits 0" $? 0
expect_fail "no tokenizer" 2 "missing --tokenizer" -- $T tokenize --text hi
expect_fail "both text and in" 2 "exactly one" -- $T tokenize --tokenizer bytes --text a --in b
expect_fail "unknown flag" 2 "unknown argument" -- $T tokenize --tokenizer bytes --text a --frobnicate

expect_eq "bytes encode" "$($T tokenize --tokenizer bytes --text 'hi')" "104 105"
expect_eq "bytes encode --bos" "$($T tokenize --tokenizer bytes --text 'hi' --bos)" "256 104 105"
expect_eq "bytes decode" "$($T tokenize --tokenizer bytes --decode --text '256 104 105 257')" "hi"
expect_fail "decode: not an id" 1 "'x7' is not a token id" -- $T tokenize --tokenizer bytes --decode --text '104 x7'
expect_fail "decode: id too large" 1 "'258' is not a token id" -- $T tokenize --tokenizer bytes --decode --text '258'
expect_fail "missing tokenizer file" 1 "no such tokenizer" -- $T tokenize --tokenizer "$W/nope.model" --text hi
echo "this is not a tokenizer" >"$W/fake.model"
expect_fail "not a tokenizer" 1 "not a tokenizer" -- $T tokenize --tokenizer "$W/fake.model" --text hi
: >"$W/empty.model"
expect_fail "empty tokenizer file" 1 "empty file" -- $T tokenize --tokenizer "$W/empty.model" --text hi
expect_fail "missing --in file" 1 "error" -- $T tokenize --tokenizer bytes --in "$W/nothing.txt"

if [ -n "$SHARED" ] && [ -f "$SHARED/llama-tokenizer/tokenizer.model" ]; then
    M=$SHARED/llama-tokenizer/tokenizer.model
    G=$SHARED/llama-cpp-vocab/ggml-vocab-gpt-2.gguf
    expect_eq "spm encode" "$($T tokenize --tokenizer "$M" --text 'Hello world')" "15043 3186"
    expect_eq "spm encode --bos" "$($T tokenize --tokenizer "$M" --text ' Hello World!' --bos)" "1 29871 15043 2787 29991"
    expect_eq "spm decode" "$($T tokenize --tokenizer "$M" --decode --text '1 15043 3186 2')" "Hello world"
    expect_eq "gguf spm = model" "$($T tokenize --tokenizer "$SHARED/llama-cpp-vocab/ggml-vocab-llama-spm.gguf" --text 'Hello world')" "15043 3186"
    expect_eq "gpt-2 encode" "$($T tokenize --tokenizer "$G" --text 'Hello world')" "15496 995"
    # --in: one line of ids per line, CRLF accepted; decoding them gives the lines back
    printf 'Hello world\r\n  two spaces\r\n\r\nlast line without newline' >"$W/in.txt"
    $T tokenize --tokenizer "$M" --in "$W/in.txt" >"$W/ids.txt"; expect_eq "spm --in exit" $? 0
    expect_eq "spm --in lines" "$(wc -l <"$W/ids.txt")" "4"
    expect_eq "spm --in first line" "$(head -1 "$W/ids.txt")" "15043 3186"
    $T tokenize --tokenizer "$M" --decode --in "$W/ids.txt" >"$W/back.txt"
    expect_eq "spm --in round trip" "$(cat "$W/back.txt")" "$(tr -d '\r' <"$W/in.txt")"
    $T tokenize --tokenizer "$G" --in "$W/in.txt" | $T tokenize --tokenizer "$G" --decode --in - >"$W/back2.txt"
    expect_eq "gpt-2 --in round trip" "$(cat "$W/back2.txt")" "$(tr -d '\r' <"$W/in.txt")"
    info=$($T tokenize --tokenizer "$M" --info)
    expect_eq "info" "$(echo "$info" | grep -c 'vocab_size 32000\|kind spm\|bos_id 1')" "3"
else
    echo "shared data absent: SentencePiece / GPT-2 parts skipped"
fi
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
