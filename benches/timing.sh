# Shared by the benchmark scripts (sourced): wall-clock timing of one command.
now() { date +%s%N; }
# time_ms CMD...: wall time of one run in ms, its output discarded
time_ms() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); echo $(( (t1 - t0) / 1000000 )); }
