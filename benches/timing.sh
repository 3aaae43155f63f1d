# Shared by the benchmark scripts (sourced): wall-clock timing of one command.
#
# The clock is bash's own ($EPOCHREALTIME, bash 5): reading it starts no process. The
# scripts once read `date +%s%N`, twice a measurement, and the start and exit of those
# two `date` processes (2-5 ms on the 2-core VM) were counted in every figure.
if [[ -z "${EPOCHREALTIME:-}" ]]; then
  echo "bash 5 or later is needed (EPOCHREALTIME)" >&2
  exit 2
fi
# now_us: microseconds since the epoch, read into $now (no subshell: `t0=$(...)` forks).
now_us() { now=${EPOCHREALTIME/[.,]/}; }
# time_ms CMD...: wall time of one run in ms, its output discarded
time_ms() {
  local t0 now
  now_us; t0=$now
  "$@" >/dev/null 2>&1
  now_us
  echo $(( (now - t0) / 1000 ))
}
