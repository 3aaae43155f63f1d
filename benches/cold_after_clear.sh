#!/usr/bin/env bash
# Cold builds right after a large cache was deleted, pflow vs ninja (issue 23).
#
#   benches/cold_after_clear.sh [RUNS] [PFLOW]   (compare.sh runs it; default 7 runs,
#                                                 PFLOW defaults to target/release/pflow)
#
# Before each timed run, untimed: pflow fills its cache with 20,000 entries (a cold
# build of 20,000 echo nodes) and `pflow cache clear`s it; ninja's side writes a tree
# of 20,000 files on the same disk and `rm -rf`s it. Then, at once, a cold build of N
# independent shell nodes (N = 1,000 and 5,000, 2 jobs) in a fresh copy of the project,
# pflow into the cache it just cleared. ext4 passes over inodes freed in the last
# minutes when it allocates new ones, so a tool that creates files per node pays for
# the deletion. Runs are interleaved (which tool goes first alternates). Prints medians
# and ratios and merges them into benches/results.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
runs="${1:-7}"
pflow="${2:-$root/target/release/pflow}"
command -v ninja >/dev/null || { echo "ninja not found: apt-get install ninja-build" >&2; exit 2; }
[[ -x "$pflow" ]] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'EOF'
import json, os, sys
work = sys.argv[1]
os.makedirs(f"{work}/fill", exist_ok=True)
json.dump({"ir_version": "0.1.0",
           "nodes": [{"id": f"f{i}", "type": "echo", "params": {"message": f"fill {i}"}} for i in range(20000)]},
          open(f"{work}/fill/wf.json", "w"))
for m in (1000, 5000):
    d = f"{work}/wide{m}"
    os.makedirs(d, exist_ok=True)
    json.dump({"ir_version": "0.1.0",
               "nodes": [{"id": f"s{i}", "type": "shell", "params": {"command": f"echo {i}"}} for i in range(m)]},
              open(f"{d}/wf.json", "w"))
    with open(f"{d}/build.ninja", "w") as f:
        f.write("rule run\n  command = echo $n > $out\n")
        for i in range(m):
            f.write(f"build s{i}: run\n  n = {i}\n")
EOF

source "$here/timing.sh"

cache="$work/cache"
# Untimed: what each tool deletes just before its timed run.
pflow_fill_and_clear() {
  (cd "$work/fill" && CI=1 "$pflow" build wf.json --jobs 2 --no-repair --cache-dir "$cache" >/dev/null 2>&1)
  CI=1 "$pflow" cache clear --cache-dir "$cache" >/dev/null 2>&1
}
ninja_fill_and_clear() {
  python3 - "$work/tree" <<'EOF'
import os, sys
t = sys.argv[1]
for i in range(20000):
    d = f"{t}/{i // 100}"
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    open(f"{d}/{i}", "w").write(str(i))
EOF
  rm -rf "$work/tree"
}

declare -A times
for m in 1000 5000; do
  for ((r = -1; r < runs; r++)); do
    cp -r "$work/wide$m" "$work/n-$m-$r" && cp -r "$work/wide$m" "$work/p-$m-$r"
    sync
    if ((r % 2)); then
      pflow_fill_and_clear
      p="$(cd "$work/p-$m-$r" && CI=1 time_ms "$pflow" build wf.json --jobs 2 --no-repair --cache-dir "$cache")"
      ninja_fill_and_clear
      n="$(cd "$work/n-$m-$r" && time_ms ninja -j2)"
    else
      ninja_fill_and_clear
      n="$(cd "$work/n-$m-$r" && time_ms ninja -j2)"
      pflow_fill_and_clear
      p="$(cd "$work/p-$m-$r" && CI=1 time_ms "$pflow" build wf.json --jobs 2 --no-repair --cache-dir "$cache")"
    fi
    if ((r >= 0)); then
      times[n$m]+="$n "
      times[p$m]+="$p "
    fi
  done
done

python3 - "$here" "${times[n1000]}" "${times[p1000]}" "${times[n5000]}" "${times[p5000]}" <<'EOF'
import json, os, statistics, sys
here = sys.argv[1]
vals = [list(map(int, s.split())) for s in sys.argv[2:]]
cases = [("cold-after-clear-1k", "cold build after clearing a 20,000-entry cache, 1,000 shell nodes, 2 jobs", vals[0], vals[1]),
         ("cold-after-clear-5k", "cold build after clearing a 20,000-entry cache, 5,000 shell nodes, 2 jobs", vals[2], vals[3])]
path = f"{here}/results.json"
out = json.load(open(path)) if os.path.exists(path) else {}
print(f"{'case':<20} {'ninja ms':>9} {'pflow ms':>9} {'ratio':>6}   runs (ninja | pflow)")
for key, label, n, p in cases:
    mn, mp = statistics.median(n), statistics.median(p)
    ratio = mp / mn if mn else float("inf")
    out[key] = {"label": label, "ninja_ms": mn, "pflow_ms": mp, "ratio": round(ratio, 2), "runs": len(n)}
    print(f"{key:<20} {mn:>9.0f} {mp:>9.0f} {ratio:>6.2f}   {n} | {p}")
json.dump(out, open(path, "w"), indent=2)
print(f"merged into {path}")
EOF
