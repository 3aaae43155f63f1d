#!/usr/bin/env bash
# Compare pflow with ninja on the same generated graphs (issue: performance).
#
#   benches/compare.sh [RUNS]        (default 7 runs per case; needs ninja-build and python3)
#
# Cases, each in its own block of runs interleaved (ninja, pflow, ninja, pflow, ...) so
# machine noise hits both:
#   noop-10k   no-op rebuild of a 10,000-node layered DAG (node i reads i-1 and i/2)
#   noop-100k  the same with 100,000 nodes
#   edit-10k   the 10,000-node graph after editing one node near the end
#   cold-1k    cold build of 1,000 independent shell nodes with 2 jobs
#   cold-after-clear-1k, cold-after-clear-5k   (benches/cold_after_clear.sh, run last)
#              cold builds of 1,000 and 5,000 independent shell nodes right after
#              clearing a 20,000-entry cache (ninja: right after `rm -rf` of 20,000 files)
# and the peak resident set (max RSS, /usr/bin/time) of the 10k and 100k no-ops.
# Prints medians and the ratio pflow/ninja, writes benches/results.json and
# benches/chart.svg.
set -euo pipefail
# ninja checks a 100,000-deep chain of inputs recursively: the default 8 MB stack is
# not enough for it.
ulimit -s unlimited
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
runs="${1:-7}"
command -v ninja >/dev/null || { echo "ninja not found: apt-get install ninja-build" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pflow="$root/target/release/pflow"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'EOF'
import json, os, sys
work = sys.argv[1]
# Layered DAGs: pflow echo nodes (in-process) and the same edges for ninja.
for n, name in [(10000, "layered"), (100000, "layered-100k")]:
    os.makedirs(f"{work}/{name}", exist_ok=True)
    nodes = [{"id": "n0", "type": "echo", "params": {"message": "root"}}]
    for i in range(1, n):
        nodes.append({"id": f"n{i}", "type": "echo",
                      "params": {"message": f"{i}:${{n{i-1}.metadata.count}}:${{n{i//2}.metadata.count}}"}})
    json.dump({"ir_version": "0.1.0", "nodes": nodes}, open(f"{work}/{name}/wf.json", "w"))
    with open(f"{work}/{name}/build.ninja", "w") as f:
        f.write("rule gen\n  command = echo $out > $out\n")
        f.write("build n0: gen\n")
        for i in range(1, n):
            f.write(f"build n{i}: gen n{i-1} n{i//2}\n")
# 1,000 independent shell commands.
m = 1000
os.makedirs(f"{work}/wide", exist_ok=True)
json.dump({"ir_version": "0.1.0",
           "nodes": [{"id": f"s{i}", "type": "shell", "params": {"command": f"echo {i}"}} for i in range(m)]},
          open(f"{work}/wide/wf.json", "w"))
with open(f"{work}/wide/build.ninja", "w") as f:
    f.write("rule run\n  command = echo $n > $out\n")
    for i in range(m):
        f.write(f"build s{i}: run\n  n = {i}\n")
EOF

source "$here/timing.sh"

# Warm the layered builds (the 100,000-node cold builds take a few minutes).
for d in layered layered-100k; do
  (cd "$work/$d" && ninja -j2 >/dev/null && CI=1 "$pflow" build wf.json --jobs 2 --no-repair >/dev/null 2>&1)
done

edit_wf() {
  # One edit near the end: ninja sees a newer input, pflow a param value it has never
  # seen (new each run, so the node really runs instead of finding an older entry).
  (cd "$work/layered" && sleep 0.01 && touch n9990 && python3 - <<'EOF'
import json, re, time
d = json.load(open("wf.json"))
p = d["nodes"][9990]["params"]
p["message"] = re.sub(r"^[^:]*", str(time.time_ns()), p["message"])
json.dump(d, open("wf.json", "w"))
EOF
  )
}

# pair DIR_NINJA DIR_PFLOW: one timed run of each, in "$n" and "$p". Which goes first
# alternates from run to run (by $r), so neither always runs in the other's wake: ninja's
# edit spawns 10 shells, and the process that follows a burst of processes pays more
# for its fresh memory on this VM.
pair() {
  local nd="$1" pd="$2"
  sync
  if ((r % 2)); then
    p="$(cd "$pd" && CI=1 time_ms "$pflow" build wf.json --jobs 2 --no-repair)"
    n="$(cd "$nd" && time_ms ninja -j2)"
  else
    n="$(cd "$nd" && time_ms ninja -j2)"
    p="$(cd "$pd" && CI=1 time_ms "$pflow" build wf.json --jobs 2 --no-repair)"
  fi
}

# Each case in its own block (one untimed warm-up pair first), ninja and pflow
# interleaved within it. `sync` (untimed) before each pair, so that earlier writes are
# flushed then and not during a measurement. Cases are not mixed: right after a cold
# build has started and reaped 1,000 processes, the next process that touches tens of
# MB of fresh memory pays for it (on this VM, the first no-op after a cold build took
# ~100 ms instead of ~50), which would measure the machine, not the no-op.
declare -a noop_n noop_p big_n big_p edit_n edit_p cold_n cold_p
# The first no-op after a build that ran something is an ordinary build (it writes the
# no-op record); the untimed warm-up pair is that one.
for ((r = -1; r < runs; r++)); do
  pair "$work/layered" "$work/layered"
  ((r >= 0)) && noop_n+=("$n") && noop_p+=("$p")
done
for ((r = -1; r < runs; r++)); do
  pair "$work/layered-100k" "$work/layered-100k"
  ((r >= 0)) && big_n+=("$n") && big_p+=("$p")
done
# Peak resident set of the no-ops (KB), a few runs each.
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
declare -a rss10_n rss10_p rss100_n rss100_p
for ((r = 0; r < 5; r++)); do
  rss10_n+=("$(cd "$work/layered" && rss ninja -j2)")
  rss10_p+=("$(cd "$work/layered" && CI=1 rss "$pflow" build wf.json --jobs 2 --no-repair)")
  rss100_n+=("$(cd "$work/layered-100k" && rss ninja -j2)")
  rss100_p+=("$(cd "$work/layered-100k" && CI=1 rss "$pflow" build wf.json --jobs 2 --no-repair)")
done
for ((r = -1; r < runs; r++)); do
  edit_wf
  pair "$work/layered" "$work/layered"
  ((r >= 0)) && edit_n+=("$n") && edit_p+=("$p")
done
# A cold build runs in a fresh copy of the project (made untimed), as a new checkout
# would, and nothing is deleted until the end: ext4 passes over inodes freed in the last
# minutes when it allocates new ones, so deleting the previous run's 1,000-3,000 files
# just before each run made every later run slower (pflow's cache created about 2.2
# inodes per node where ninja creates 1, so it suffered more; see cold_after_clear.sh).
for ((r = -1; r < runs; r++)); do
  cp -r "$work/wide" "$work/cold-ninja-$r" && cp -r "$work/wide" "$work/cold-pflow-$r"
  pair "$work/cold-ninja-$r" "$work/cold-pflow-$r"
  ((r >= 0)) && cold_n+=("$n") && cold_p+=("$p")
done

python3 - "$here" "${noop_n[*]}" "${noop_p[*]}" "${big_n[*]}" "${big_p[*]}" "${edit_n[*]}" "${edit_p[*]}" "${cold_n[*]}" "${cold_p[*]}" \
  "${rss10_n[*]}" "${rss10_p[*]}" "${rss100_n[*]}" "${rss100_p[*]}" <<'EOF'
import json, statistics, sys
here = sys.argv[1]
vals = [list(map(int, s.split())) for s in sys.argv[2:]]
cases = [("noop-10k", "no-op rebuild, 10,000 nodes", vals[0], vals[1]),
         ("noop-100k", "no-op rebuild, 100,000 nodes", vals[2], vals[3]),
         ("edit-10k", "one edited node, 10,000 nodes", vals[4], vals[5]),
         ("cold-1k", "cold build, 1,000 shell nodes, 2 jobs", vals[6], vals[7])]
out = {}
print(f"{'case':<10} {'ninja ms':>9} {'pflow ms':>9} {'ratio':>6}")
for key, label, n, p in cases:
    mn, mp = statistics.median(n), statistics.median(p)
    ratio = mp / mn if mn else float("inf")
    out[key] = {"label": label, "ninja_ms": mn, "pflow_ms": mp, "ratio": round(ratio, 2), "runs": len(n)}
    print(f"{key:<10} {mn:>9.0f} {mp:>9.0f} {ratio:>6.2f}")
rss = {}
print(f"{'peak RSS':<10} {'ninja MiB':>9} {'pflow MiB':>9} {'ratio':>6}")
for key, n, p in [("noop-10k", vals[8], vals[9]), ("noop-100k", vals[10], vals[11])]:
    mn, mp = statistics.median(n) / 1024, statistics.median(p) / 1024
    rss[key] = {"ninja_mib": round(mn, 1), "pflow_mib": round(mp, 1), "ratio": round(mp / mn, 2), "runs": len(n)}
    print(f"{key:<10} {mn:>9.1f} {mp:>9.1f} {mp / mn:>6.2f}")
json.dump({**out, "peak_rss": rss}, open(f"{here}/results.json", "w"), indent=2)
# A small horizontal bar chart, SVG by hand (no plotting library needed). Each case has
# its own scale (the slower tool's bar is full length): a cold build takes ten times
# as long as a no-op, and one scale would flatten the no-op bars to a few pixels.
w, bar, gap, left = 640, 18, 34, 250
height = 40 + len(cases) * (2 * bar + gap)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="Helvetica,Arial,sans-serif" font-size="12">',
       f'<text x="10" y="20" font-size="14" font-weight="bold">pflow vs ninja (median wall time; lower is better)</text>']
y = 40
for key, v in out.items():
    svg.append(f'<text x="10" y="{y + bar}">{v["label"]}</text>')
    svg.append(f'<text x="10" y="{y + 2 * bar}" fill="#555">pflow/ninja = {v["ratio"]:.2f}</text>')
    scale = (w - left - 90) / (max(v["ninja_ms"], v["pflow_ms"]) or 1)
    for i, (name, ms, color) in enumerate([("ninja", v["ninja_ms"], "#888"), ("pflow", v["pflow_ms"], "#2a7ae2")]):
        yy = y + i * bar
        svg.append(f'<rect x="{left}" y="{yy}" width="{max(1, ms * scale):.1f}" height="{bar - 3}" fill="{color}"/>')
        svg.append(f'<text x="{left + max(1, ms * scale) + 5:.1f}" y="{yy + bar - 6}">{name} {ms:.0f} ms</text>')
    y += 2 * bar + gap
svg.append("</svg>")
open(f"{here}/chart.svg", "w").write("\n".join(svg) + "\n")
print(f"wrote {here}/results.json and {here}/chart.svg")
EOF

# --- cold after clear (issue 23) ------------------------------------------------------
# Its own script and its own block of runs: each timed run follows the deletion of a
# 20,000-entry cache (pflow) or 20,000-file tree (ninja) on the same disk. It merges its
# cases into benches/results.json (not into the chart).
"$here/cold_after_clear.sh" "$runs" "$pflow"
# --- end of cold after clear -----------------------------------------------------------
