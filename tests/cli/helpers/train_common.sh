# Shared set-up of the training CLI tests (sourced): the trinity and python paths, a scratch directory
# $w removed on exit, a learnable train/val shard pair, fail and expect_fail.
set -euo pipefail
T=${TN_TRINITY:?}; PY=${TN_PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
"$PY" -c "import h5py, numpy" 2>/dev/null || { echo "SKIPPED: h5py/numpy missing for $PY"; exit 77; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect_fail NAME CMD...: the command must exit 1 with exactly one line "trinity: error: ..." on stderr.
expect_fail() {
  local name=$1; shift
  set +e; "$@" > "$w/out" 2> "$w/err"; local rc=$?; set -e
  [ $rc -eq 1 ] || { cat "$w/err"; fail "$name: exit $rc, expected 1"; }
  [ "$(wc -l < "$w/err")" -eq 1 ] || { cat "$w/err"; fail "$name: expected one error line"; }
  grep -q "^trinity: error: " "$w/err" || fail "$name: error line format"
  echo "ok: $name: $(cat "$w/err")"
}

"$PY" "$here/helpers/make_pattern_shard.py" "$w/train.h5" 20000 64 1
"$PY" "$here/helpers/make_pattern_shard.py" "$w/val.h5" 3000 64 2
