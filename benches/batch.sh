#!/usr/bin/env bash
# A batch of HTTP calls against a slow server (issue: performance, batches).
#
#   benches/batch.sh [RUNS] [ITEMS]   (default 3 runs, 500 items; needs python3 and
#                                      /usr/bin/time, Debian's `time`)
#
# A loopback server answers every request after 100 ms (Python's ThreadingHTTPServer,
# headers and body in two writes as the stock handler does). One workflow holds one
# `http` batch node of ITEMS items, no `parallel` given (the default), no `--jobs`; it is
# built cold (a fresh cache each run) at max_concurrent 10 and 100. Prints the median
# wall time, the ideal (ITEMS / workers x 100 ms), their ratio and the largest peak RSS
# of the runs. Target: ratio <= 1.1. For scale, "floor" is the same requests from
# Python's urllib in a thread pool of the same size (a connection per request): what
# this server allows a client that does not reuse connections.
#
# Two servers: the stock one (HTTP/1.0, a connection per request) and the same handler
# speaking HTTP/1.1 keep-alive. On a reused connection the server's second write waits
# for the ACK of its first (Nagle, on the server's socket), which the client delays by
# up to 40 ms: about 140 ms an item whatever the client does (TCP_NODELAY on the
# client's socket does not touch the server's writes). That case is shown, not a target.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
runs="${1:-3}"
items="${2:-500}"
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pflow="$root/target/release/pflow"
work="$(mktemp -d)"
server_pids=()
cleanup() {
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/server.py" <<'EOF'
import http.server, sys, time

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = sys.argv[1]

    def do_GET(self):
        time.sleep(0.1)
        body = b'{"ok": true, "path": "%s"}' % self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()          # first write: the headers
        self.wfile.write(body)      # second write: the body

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

srv = Server(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF

cat >"$work/workflow.py" <<'EOF'
import json, sys
path, port, items, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
json.dump({"nodes": [{
    "id": "get", "type": "http",
    "batch": {"items": list(range(items)), "max_concurrent": workers},
    "params": {"url": f"http://127.0.0.1:{port}/item/${{item}}"}}],
    "outputs": {"count": {"source": "${get.success_count}"}}}, open(path, "w"))
EOF

for v in 1.0 1.1; do
  python3 "$work/server.py" "HTTP/$v" >"$work/port-$v" &
  server_pids+=($!)
  for _ in $(seq 50); do [ -s "$work/port-$v" ] && break; sleep 0.1; done
  for workers in 10 100; do
    python3 "$work/workflow.py" "$work/wf-$v-$workers.json" "$(cat "$work/port-$v")" "$items" "$workers"
  done
done

cat >"$work/client.py" <<'EOF'
import sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, items, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
get = lambda i: urllib.request.urlopen(f"http://127.0.0.1:{port}/item/{i}").read()
t0 = time.monotonic()
with ThreadPoolExecutor(workers) as pool:
    list(pool.map(get, range(items)))
print(round((time.monotonic() - t0) * 1000))
EOF

source "$here/timing.sh"
printf '%-40s %9s %9s %6s %9s %14s\n' case "time ms" "ideal ms" ratio "floor ms" "peak RSS MiB"
for v in 1.0 1.1; do
  for workers in 10 100; do
    times=() rss=0
    for ((r = 0; r < runs; r++)); do
      t0=$(now)
      /usr/bin/time -v -o "$work/time.txt" "$pflow" -C "$work" build "wf-$v-$workers.json" \
        --cache-dir "$work/cache-$v-$workers-$r" --no-repair -q >"$work/out.txt" 2>"$work/err.txt" \
        || { cat "$work/err.txt" >&2; exit 1; }
      t1=$(now)
      grep -qx "$items" "$work/out.txt" \
        || { echo "expected $items successes, got: $(cat "$work/out.txt")" >&2; exit 1; }
      times+=($(((t1 - t0) / 1000000)))
      kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
      ((kb > rss)) && rss=$kb
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    floor=$(python3 "$work/client.py" "$(cat "$work/port-$v")" "$items" "$workers")
    ideal=$((items * 100 / workers))
    label="$items items, $workers workers, HTTP/$v"
    [ "$v" = 1.1 ] && label="$label keep-alive"
    awk -v c="$label" -v t="$median" -v i="$ideal" -v f="$floor" -v k="$rss" \
      'BEGIN { printf "%-40s %9d %9d %6.2f %9d %14.1f\n", c, t, i, t / i, f, k / 1024 }'
  done
done
