# Sourced by the benchmark scripts that start `weft serve --port 0`.
# wait_listening LOGFILE PID -> prints the port from the server's
# "listening on 127.0.0.1:PORT" line; fails after 30 s or when PID exits first.
wait_listening() {
  local logf=$1 pid=$2 port=
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$logf" 2>/dev/null | head -1)
    [ -n "$port" ] && { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}
