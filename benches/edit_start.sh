#!/usr/bin/env bash
# An edit near the start of a 10,000-node chain, against a cold build of the same graph
# (issue: performance).
#
#   benches/edit_start.sh [RUNS]        (default 5 runs per case; needs python3)
#   PFLOW=/path/to/pflow benches/edit_start.sh [RUNS]   (that binary, not a fresh build:
#                                        to compare two versions on one machine)
#   IDLE=2 benches/edit_start.sh [RUNS]  (that many seconds of quiet before each build,
#                                        as when a person edits between builds)
#   ONE_BUILD=1 benches/edit_start.sh [RUNS]
#                                       (each round edits a fresh copy built once, untimed:
#                                        the edit meets one earlier build in its cache
#                                        instead of one more each round, and no compiled
#                                        forms: it is the first edit of its kind, which
#                                        takes the normal path and keeps them)
#   INSTR=1 benches/edit_start.sh [RUNS] (then also one cold build and one edit counted
#                                        under valgrind's callgrind: instructions do not
#                                        move with the machine as wall time does)
#
# Back to back, a build reuses memory the build before it freed. After a pause a VM that
# hands free memory back to its host (virtio-balloon free page reporting, as on this
# project's 2-core VMs) gives a build pages the host must supply again, and zeroing them
# costs several times as much; how much of that falls on which build varies from run to
# run, so compare both ways.
#
# Node i passes node i-1's data on (and reads node i/2), so a new value at node 0 reaches
# every node: the edited build runs all 10,000 again, as a cold build does, and should
# take no longer. The untimed first edit is turned away from the edit path (it reaches
# too far) and its build keeps the nodes' compiled forms, with which every timed edit
# takes the edit path (see the README). Runs alternate (cold, edit, edit, cold, ...); each cold build starts
# from an empty cache in a fresh folder of its own, made untimed. By default the edited
# chain keeps every earlier round's build in its cache, as a person's edits do: each
# adds a segment of 10,000 entries that the next build's first lookup reads (its index;
# the key map kept in the cache numbers most of them, see the README), so later rounds
# cost a little more. Prints medians, the ratio edit/cold, and the
# median of each round's own ratio.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
runs="${1:-5}"
idle="${IDLE:-0}"
one_build="${ONE_BUILD:-0}"
if [[ -z "${PFLOW:-}" ]]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
pflow="${PFLOW:-$root/target/release/pflow}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
n = 10000
nodes = [{"id": "n0", "type": "echo", "params": {"message": "root", "data": "seed"}}]
for i in range(1, n):
    nodes.append({"id": f"n{i}", "type": "echo",
                  "params": {"message": f"{i}:${{n{i // 2}.metadata.count}}",
                             "data": f"${{n{i - 1}.data}}"}})
os.makedirs(f"{work}/chain")
json.dump({"ir_version": "0.1.0", "nodes": nodes}, open(f"{work}/chain/wf.json", "w"))
PY

source "$here/timing.sh"
build() { (cd "$1" && CI=1 time_ms "$pflow" build wf.json --jobs 2 --no-repair); }
edit() {
  # A value node 0 has never had, so every node really runs instead of finding an entry.
  python3 - "$1/wf.json" <<'PY'
import json, sys, time
d = json.load(open(sys.argv[1]))
d["nodes"][0]["params"]["data"] = f"seed-{time.time_ns()}"
json.dump(d, open(sys.argv[1], "w"))
PY
}

build "$work/chain" >/dev/null   # warm: the edited project has a full cache
declare -a cold edited
# A build right after another reuses the memory that one freed, and the first of a
# round's two builds comes after the untimed work between rounds: which build goes
# first changed the edit by a fifth in one measurement, so every other round runs the
# edit first.
timed() { sync && sleep "$idle" && build "$1"; }
for ((r = -1; r < runs; r++)); do
  edited_dir="$work/chain"
  if [[ "$one_build" == 1 ]]; then
    # Untimed: a copy of the chain as it stands, built once.
    edited_dir="$work/chain-$r"
    mkdir "$edited_dir" && cp "$work/chain/wf.json" "$edited_dir/"
    build "$edited_dir" >/dev/null
  fi
  edit "$edited_dir"
  # The workflow alone: copying the edited project's cache (tens of MB after a few
  # rounds) and deleting it again put that much writing and freeing just before the
  # round's builds.
  mkdir "$work/cold-$r" && cp "$edited_dir/wf.json" "$work/cold-$r/"
  if ((r % 2 == 0)); then
    c=$(timed "$work/cold-$r")
    e=$(timed "$edited_dir")
  else
    e=$(timed "$edited_dir")
    c=$(timed "$work/cold-$r")
  fi
  ((r >= 0)) && cold+=("$c") && edited+=("$e")
done
python3 - "${cold[*]}" "${edited[*]}" <<'PY'
import statistics, sys
c, e = (list(map(int, s.split())) for s in sys.argv[1:])
mc, me = statistics.median(c), statistics.median(e)
print(f"cold build, 10,000-node chain:        {mc:.0f} ms (median of {len(c)})")
print(f"edit at node 0, everything re-runs:   {me:.0f} ms (median of {len(e)})")
print(f"edit / cold:                          {me / mc:.2f}")
# Each round's edit against that round's cold build: a drift of the machine's
# speed over the run (the VM's memory, other guests) moves both alike.
ratios = [x / y for x, y in zip(e, c)]
pairs = statistics.median(ratios)
print(f"edit / cold, median of the rounds:    {pairs:.2f}")
# How sure that median is: the rounds resampled (a bootstrap), 95% of the medians
# within. On the 2-core VM a round's ratio ranges from about 0.7 to 1.4, so a few
# percent either way is within the run's own noise unless the interval says otherwise.
if len(ratios) >= 5:
    import random
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    print(f"  95% interval of that median:        {meds[50]:.2f} to {meds[1949]:.2f}")
PY

if [[ "${INSTR:-0}" == 1 ]]; then
  if ! command -v valgrind >/dev/null; then
    echo "INSTR=1 needs valgrind (apt-get install valgrind)" >&2
    exit 2
  fi
  # Instructions of every thread of one build (a build's threads, not its commands:
  # the chain's nodes run in-process).
  counted() {
    (cd "$1" && CI=1 PFLOW_DEBUG=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      "$pflow" build wf.json --jobs 2 --no-repair 2>&1 >/dev/null) >"$work/counted.log"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/counted.log" | tail -1
  }
  mkdir "$work/cold-instr" && cp "$work/chain/wf.json" "$work/cold-instr/"
  # The record and the compiled forms name the pflow that made them (its executable's
  # inode times too): anything that touches the binary between the timed builds and
  # this one (a profiler's build-id cache hard-links it) sends the counted edit the
  # normal way, which the check below reports.
  edit "$work/chain"
  ci=$(counted "$work/cold-instr")
  ei=$(counted "$work/chain")
  if ! grep -q "edit path used" "$work/counted.log"; then
    echo "the counted edit did not take the edit path:" >&2
    grep "^debug:" "$work/counted.log" | head -3 >&2
    exit 1
  fi
  python3 - "$ci" "$ei" <<'PY'
import sys
c, e = (int(x) for x in sys.argv[1:])
print(f"instructions, cold build:             {c / 1e6:.1f}M")
print(f"instructions, edit at node 0:         {e / 1e6:.1f}M")
print(f"edit / cold, instructions:            {e / c:.3f}")
PY
fi
