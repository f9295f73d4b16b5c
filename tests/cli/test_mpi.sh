#!/usr/bin/env bash
# Data-parallel training over MPI (docs/SCALE.md) against one process with the same global batch, through
# the `trinity` binary: `mpirun -np 2` with one thread per rank, a tiny model (dim 64, 2 layers, seq 32),
# batch 2 x accum 4 (each rank computes 2 micro-batches of every step), 20 steps:
#   - dense, STE (ternary, per-row absmean) and PRIMAL losses within 1e-6 relative at every step, and the
#     validation losses too; PRIMAL (with vote_decay = 0.5, so that votes outlive a step) ends with identical
#     grid indices and votes;
#   - a 2-rank run resumed from its step-10 checkpoint reproduces the uninterrupted 2-rank losses exactly,
#     and one process resumed from it continues within 1e-6 (a different N is allowed: same global batch);
#   - rank 0 alone writes: one log.jsonl line per step, checkpoints with world_size = 2;
#   - faults: a rank killed at step 13 ends the job within seconds, the survivors say why on one line each,
#     and ckpt-000010.h5 is intact (a run resumes from it); a rank that stops (SIGSTOP) at step 13 ends the job
#     when the others' reduction times out ([train] comm_timeout_s = 3);
#   - bad input: accum not divisible by the ranks, comm = single under mpirun -np 2, comm = nccl on the CPU.
# Skips when mpirun is missing or the binary was built without MPI.
source "$(dirname "$0")/helpers/train_common.sh"

command -v mpirun > /dev/null || { echo "SKIPPED: mpirun not installed (scripts/setup.sh installs openmpi-bin)"; exit 77; }
# As root (CI) mpirun needs these; the vader setting avoids CMA (ptrace) copies, which containers forbid.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
# Under AddressSanitizer: Open MPI's libraries have no frame pointers, so the leak checker needs the slow
# unwinder to see that MPI_Init's allocations are theirs (tests/lsan.supp).
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
MPI2=(mpirun -np 2)

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 160
tied_embeddings = false
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 2
seq_len = 32
accum = 4
steps = 20
eval_every = 10
eval_batches = 2
ckpt_every = 10
threads = 1
[optim]
lr = 3e-3
INI

set +e
"$T" train "$w/base.ini" "train.out_dir=$w/probe" train.steps=1 train.comm=mpi > /dev/null 2> "$w/probe.err"
rc=$?
set -e
if [ $rc -ne 0 ] && grep -q "built without MPI" "$w/probe.err"; then
  echo "SKIPPED: $(cat "$w/probe.err")"; exit 77
fi
[ $rc -eq 0 ] || { cat "$w/probe.err"; fail "comm = mpi with one process"; }

declare -A method=(
  [dense]=""
  [ste]="quant.grid=ternary quant.scale=absmean quant.scale_per_row=true quant.layers=attn,mlp"
  [primal]="optim.method=primal primal.init_std=0.05 primal.c=0.01 primal.vote_decay=0.5"
)
for m in dense ste primal; do
  # shellcheck disable=SC2086
  "$T" train "$w/base.ini" "train.out_dir=$w/$m-1" ${method[$m]} 2> "$w/$m-1.err" || { cat "$w/$m-1.err"; fail "$m, 1 process"; }
  # shellcheck disable=SC2086
  "${MPI2[@]}" "$T" train "$w/base.ini" "train.out_dir=$w/$m-2" ${method[$m]} > "$w/$m-2.out" 2> "$w/$m-2.err" \
    || { cat "$w/$m-2.err"; fail "$m, 2 ranks"; }
  grep -q "data parallel: 2 rank(s) over mpi, 2 micro-batch(es)" "$w/$m-2.err" || { cat "$w/$m-2.err"; fail "$m: no data-parallel line"; }
  "$PY" - "$w/$m-1" "$w/$m-2" "$m" <<'PY'
import json, sys, h5py
one, two, m = sys.argv[1:4]
def rows(d):
    return [json.loads(l) for l in open(d + "/log.jsonl")]
a, b = rows(one), rows(two)
la = {r["step"]: r["loss"] for r in a if "loss" in r}
lb = {r["step"]: r["loss"] for r in b if "loss" in r}
assert sorted(la) == sorted(lb) == list(range(1, 21)), (sorted(la), sorted(lb))
assert sum("loss" in r for r in b) == 20, "rank 0 alone must log: one line per step"
worst = max(abs(la[s] - lb[s]) / abs(la[s]) for s in la)
assert worst <= 1e-6, f"{m}: losses differ by {worst:.3g} relative"
va = [r["val_loss"] for r in a if "val_loss" in r]
vb = [r["val_loss"] for r in b if "val_loss" in r]
assert len(va) == len(vb) == 2 and all(abs(x - y) <= 1e-6 * x for x, y in zip(va, vb)), (va, vb)
assert all("comm_s" in r for r in b if "loss" in r), "2-rank log lines carry comm_s"
f1, f2 = h5py.File(one + "/ckpt-000020.h5"), h5py.File(two + "/ckpt-000020.h5")
assert int(f2.attrs["world_size"]) == 2 and "world_size" not in f1.attrs
msg = f"{m}: 20 losses within {worst:.2g} relative"
if m == "primal":
    names = []
    f1["primal"].visit(lambda n: names.append(n) if n.endswith("/idx") or n.endswith("/vote") else None)
    diff = sum(int((f1["primal"][n][()] != f2["primal"][n][()]).sum()) for n in names)
    votes = sum(int((f1["primal"][n][()] != 0).sum()) for n in names if n.endswith("/vote"))
    assert diff == 0, f"primal: {diff} indices or votes differ"
    assert votes > 0, "primal: no votes kept to compare (vote_decay)"
    msg += f"; grid indices and votes identical ({votes} votes kept)"
print(msg)
PY
done

# ---- resume: 2 ranks from step 10 = the uninterrupted 2-rank run, exactly; 1 process within 1e-6 ------------
for m in dense primal; do
  # shellcheck disable=SC2086
  "${MPI2[@]}" "$T" train "$w/base.ini" "train.out_dir=$w/$m-2r" ${method[$m]} --resume-from "$w/$m-2/ckpt-000010.h5" \
    > /dev/null 2> "$w/res.err" || { cat "$w/res.err"; fail "$m: 2-rank resume"; }
  # shellcheck disable=SC2086
  "$T" train "$w/base.ini" "train.out_dir=$w/$m-1r" ${method[$m]} --resume-from "$w/$m-2/ckpt-000010.h5" \
    2> "$w/res1.err" || { cat "$w/res1.err"; fail "$m: 1-process resume of a 2-rank checkpoint"; }
  grep -q "written by a run of 2 rank(s), this one has 1" "$w/res1.err" || { cat "$w/res1.err"; fail "no world-size notice"; }
  "$PY" - "$w/$m-2" "$w/$m-2r" "$w/$m-1r" "$m" <<'PY'
import json, sys
def losses(d):
    return {r["step"]: r["loss"] for r in map(json.loads, open(d + "/log.jsonl")) if "loss" in r}
a, b, c = losses(sys.argv[1]), losses(sys.argv[2]), losses(sys.argv[3])
assert sorted(b) == sorted(c) == list(range(11, 21)), (sorted(b), sorted(c))
assert all(a[s] == b[s] for s in b), f"{sys.argv[4]}: the resumed 2-rank run differs"
worst = max(abs(a[s] - c[s]) / a[s] for s in c)
assert worst <= 1e-6, f"{sys.argv[4]}: 1-process resume differs by {worst:.3g}"
print(f"resume {sys.argv[4]}: 2 ranks steps 11..20 exact; 1 process within {worst:.2g}")
PY
done

# ---- faults ----------------------------------------------------------------------------------------------------
for fault in kill stop; do
  set +e
  start=$(date +%s)
  TN_TEST_FAULT=1:13:$fault timeout 120 "${MPI2[@]}" "$T" train "$w/base.ini" "train.out_dir=$w/$fault" \
    train.comm_timeout_s=3 > /dev/null 2> "$w/$fault.err"
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat "$w/$fault.err"; fail "$fault: exit $rc (0 or the 120 s timeout)"; }
  [ $took -le 60 ] || fail "$fault: the job took $took s to end"
  grep -q "^trinity: error: rank 0: " "$w/$fault.err" || { cat "$w/$fault.err"; fail "$fault: rank 0 did not say why"; }
  [ $fault = stop ] && { grep -q "no answer from the other ranks within 3 s" "$w/$fault.err" \
    || { cat "$w/$fault.err"; fail "stop: no timeout message"; }; }
  [ -e "$w/$fault/ckpt-000010.h5" ] && [ ! -e "$w/$fault/ckpt-000020.h5" ] || fail "$fault: checkpoints"
  "$T" train "$w/base.ini" "train.out_dir=$w/$fault" --resume 2> "$w/$fault-res.err" \
    || { cat "$w/$fault-res.err"; fail "$fault: the last checkpoint does not resume"; }
  echo "ok: $fault at step 13: job ended in $took s (exit $rc): $(grep -m1 '^trinity: error: rank 0' "$w/$fault.err")"
done

# ---- bad input -------------------------------------------------------------------------------------------------
expect_ranks_fail() {
  local name=$1 want=$2; shift 2
  set +e; "${MPI2[@]}" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "$@" > /dev/null 2> "$w/err"; local rc=$?; set -e
  [ $rc -ne 0 ] || fail "$name: exit 0"
  grep -q "^trinity: error: .*$want" "$w/err" || { cat "$w/err"; fail "$name: expected '$want'"; }
  [ ! -e "$w/bad/ckpt-000020.h5" ] || fail "$name: wrote a checkpoint"
  echo "ok: $name: $(grep -m1 '^trinity: error' "$w/err")"
}
expect_ranks_fail "accum 3 on 2 ranks" "accum = 3 is not divisible by the 2 ranks" train.accum=3
expect_ranks_fail "comm = single under mpirun" "comm = single, but the job was launched with 2 processes" train.comm=single
expect_fail "comm = nccl on the CPU" "$T" train "$w/base.ini" "train.out_dir=$w/bad" train.comm=nccl
expect_fail "comm = ring" "$T" train "$w/base.ini" "train.out_dir=$w/bad" train.comm=ring
echo "all MPI checks passed"
