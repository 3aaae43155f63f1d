#!/usr/bin/env bash
# A batch of HTTP calls against a slow server (issue: performance, batches).
#
#   benches/batch.sh [RUNS] [ITEMS]   (default 3 runs, 500 items; needs python3 and
#                                      /usr/bin/time, Debian's `time`)
#
# A loopback server answers every request after 100 ms. One workflow holds one `http`
# batch node of ITEMS items, no `parallel` given (the default), no `--jobs`; it is built
# cold (a fresh cache each run) at max_concurrent 10 and 100. Prints the median wall
# time, the ideal (ITEMS / workers x 100 ms), their ratio and the largest peak RSS of
# the runs. Target: ratio <= 1.1.
#
# Four servers:
# - stock: Python's ThreadingHTTPServer speaking HTTP/1.0 (a connection per request),
#   headers and body in two writes as the stock handler does. One process, a thread per
#   connection, all under one GIL on one core: at 100 requests in flight it is the
#   limit, whatever the client.
# - stock keep-alive: the same handler speaking HTTP/1.1. On a reused connection its
#   second write waits for the ACK of its first (Nagle, on the server's socket), which
#   the client delays by up to 40 ms: about 140 ms an item whatever the client does
#   (TCP_NODELAY on the client's socket does not touch the server's writes). Shown,
#   not a target.
# - asyncio: one event loop, no thread per connection, the response in one write,
#   HTTP/1.1 keep-alive and `Connection: close` honoured. At 100 in flight it is not
#   the only limit, but still one: each of the 500 requests and responses passes through
#   one Python loop, and a good client (the asyncio floor below) ends about 1.12x ideal.
# - native: `examples/slow_server.rs`, the asyncio server's design compiled (one thread,
#   an event loop: no interpreter, no thread per connection to start and tear down),
#   keep-alive, the response in one write with TCP_NODELAY. The server is not the limit
#   here: this is the case the target is about. What remains over the ideal is the
#   client's: process start, 100 connections set up on 2 cores, a few ms a round.
#
# Two "floors" show what each server allows a client, run interleaved with pflow:
# "urllib" is Python's urllib in a thread pool of the same size (a connection per
# request); "asyncio" is one Python event loop with that many keep-alive connections.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
runs="${1:-3}"
items="${2:-500}"
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
cargo build --release --quiet --example slow_server --manifest-path "$root/Cargo.toml"
pflow="$root/target/release/pflow"
work="$(mktemp -d)"
server_pids=()
cleanup() {
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/stock.py" <<'EOF'
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

cat >"$work/asyncio_server.py" <<'EOF'
import asyncio

class Http(asyncio.Protocol):
    """One request at a time per connection, answered 100 ms later in one write."""

    def connection_made(self, transport):
        self.transport, self.buf, self.busy = transport, b"", False

    def data_received(self, data):
        self.buf += data
        self.next_request()

    def next_request(self):
        if self.busy or self.transport.is_closing():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.buf[:end].split(b"\r\n")
        request = lines[0].split()
        if len(request) != 3:
            self.transport.close()
            return
        keep, length = request[2] == b"HTTP/1.1", 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"connection":
                keep = value == b"keep-alive" or (keep and value != b"close")
            elif name == b"content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return
        self.buf = self.buf[end + 4 + length:]
        body = b'{"ok": true, "path": "%s"}' % request[1]
        response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
            b"Content-Length: %d\r\nConnection: %s\r\n\r\n%s" % (
                len(body), b"keep-alive" if keep else b"close", body)
        self.busy = True
        asyncio.get_running_loop().call_later(0.1, self.answer, response, keep)

    def answer(self, response, keep):
        self.busy = False
        if self.transport.is_closing():
            return
        self.transport.write(response)
        if keep:
            self.next_request()
        else:
            self.transport.close()

async def main():
    srv = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=1024)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()

asyncio.run(main())
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

cat >"$work/urllib_client.py" <<'EOF'
import sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, items, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
get = lambda i: urllib.request.urlopen(f"http://127.0.0.1:{port}/item/{i}").read()
t0 = time.monotonic()
with ThreadPoolExecutor(workers) as pool:
    list(pool.map(get, range(items)))
print(round((time.monotonic() - t0) * 1000))
EOF

cat >"$work/asyncio_client.py" <<'EOF'
import asyncio, socket, sys, time
port, items, workers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

async def worker(todo):
    reader = writer = None
    while todo:
        i = todo.pop()
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(b"GET /item/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % i)
        status = await reader.readline()
        close, length = status.startswith(b"HTTP/1.0"), 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value == b"close"
        await reader.readexactly(length)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()

async def main():
    todo = list(range(items))[::-1]
    t0 = time.monotonic()
    await asyncio.gather(*(worker(todo) for _ in range(workers)))
    print(round((time.monotonic() - t0) * 1000))

asyncio.run(main())
EOF

servers=(stock stock-keepalive asyncio native)
declare -A label=([stock]="stock HTTP/1.0" [stock-keepalive]="stock HTTP/1.1 keep-alive"
  [asyncio]="asyncio HTTP/1.1 keep-alive" [native]="native HTTP/1.1 keep-alive")
for s in "${servers[@]}"; do
  case $s in
    stock) python3 "$work/stock.py" HTTP/1.0 >"$work/port-$s" & ;;
    stock-keepalive) python3 "$work/stock.py" HTTP/1.1 >"$work/port-$s" & ;;
    asyncio) python3 "$work/asyncio_server.py" >"$work/port-$s" & ;;
    native) "$root/target/release/examples/slow_server" 100 >"$work/port-$s" & ;;
  esac
  server_pids+=($!)
  for _ in $(seq 50); do [ -s "$work/port-$s" ] && break; sleep 0.1; done
  for workers in 10 100; do
    python3 "$work/workflow.py" "$work/wf-$s-$workers.json" "$(cat "$work/port-$s")" "$items" "$workers"
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
source "$here/timing.sh"
printf '%-50s %8s %8s %6s %8s %8s %13s\n' case "time ms" "ideal ms" ratio "urllib" "asyncio" "peak RSS MiB"
for s in "${servers[@]}"; do
  port="$(cat "$work/port-$s")"
  for workers in 10 100; do
    times=() urllib=() async=() rss=0
    for ((r = 0; r < runs; r++)); do
      now_us; t0=$now
      /usr/bin/time -v -o "$work/time.txt" "$pflow" -C "$work" build "wf-$s-$workers.json" \
        --cache-dir "$work/cache-$s-$workers-$r" --no-repair -q >"$work/out.txt" 2>"$work/err.txt" \
        || { cat "$work/err.txt" >&2; exit 1; }
      now_us; t1=$now
      grep -qx "$items" "$work/out.txt" \
        || { echo "expected $items successes, got: $(cat "$work/out.txt")" >&2; exit 1; }
      times+=($(((t1 - t0) / 1000)))
      kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
      ((kb > rss)) && rss=$kb
      urllib+=($(python3 "$work/urllib_client.py" "$port" "$items" "$workers"))
      async+=($(python3 "$work/asyncio_client.py" "$port" "$items" "$workers"))
    done
    ideal=$((items * 100 / workers))
    awk -v c="$items items, $workers workers, ${label[$s]}" -v t="$(median "${times[@]}")" \
      -v i="$ideal" -v u="$(median "${urllib[@]}")" -v a="$(median "${async[@]}")" -v k="$rss" \
      'BEGIN { printf "%-50s %8d %8d %6.2f %8d %8d %13.1f\n", c, t, i, t / i, u, a, k / 1024 }'
  done
done
