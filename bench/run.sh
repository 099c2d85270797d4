#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs. It measures RipTrace's Delve backend
# against Delve's own command line, on the same targets, in one run:
#
#   1. per-hit cost of a tracepoint in a hot loop (bench/targets/hot), with
#      the untraced loop as the baseline: Delve's own line tracepoint, the
#      agent's Delve backend, a bare uprobe (bench/uprobe: a BPF program
#      that only counts), the agent's eBPF backend, and a process the eBPF
#      backend is attached to with its tracepoint on a line the loop never
#      runs;
#   2. time from `riptrace trace` (or `dlv attach`) starting to the
#      tracepoint being live in a large optimized gRPC service
#      (bench/grpcsvc, a module of its own), median over fresh processes:
#      dlv, the agent's Delve backend, and its eBPF backend on processes
#      of an executable whose debug info the agent read when it discovered
#      the first of them;
#   3. how long that service stands still meanwhile (a client calls it
#      every 5 ms; the longest call), as the ptrace tools stop it while
#      Delve reads its debug info;
#   4. memory while attached to that service: agent + worker vs dlv, and
#      the eBPF agent's;
#   5. the CPU time the agents, the server and the `riptrace trace`
#      clients spend per hit in the runs of 1; for the eBPF agent, also
#      over its own runs alone (from the start of each until the stream
#      stored its last hit),
#      and what it spends a second while no hit comes (and so about how
#      much of its runs' CPU that idle work is).
#
# Delve is installed into .cache/bench/bin at the version go.mod requires, so
# both sides run the same Delve. Runs of the two tools alternate, so that
# load from elsewhere on the machine falls on both alike. Everything listens
# on 127.0.0.1; every process started here is stopped on exit.
#
# Knobs (environment): BENCH_HITS, hits per measured run of the ptrace
# tools (300); BENCH_UPROBE_HITS, of the uprobe tools (3000);
# BENCH_HIT_RUNS, measured runs per tool (5); BENCH_LIVE_RUNS, fresh
# processes per tool for the time to live (3).
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk with a '.' decimal point

cd "$(dirname "$0")/.."
ROOT=$PWD
RT=$ROOT/bin/riptrace
CACHE=$ROOT/.cache/bench
BIN=$CACHE/bin
N=${BENCH_HITS:-300}
NF=${BENCH_UPROBE_HITS:-3000}
WARM_FAST=$((2 * NF)) # warm-up hits of the uprobe tools (see below)
HIT_RUNS=${BENCH_HIT_RUNS:-5}
LIVE_RUNS=${BENCH_LIVE_RUNS:-3}
WARMUP=20         # first hits of each tool, not measured: Delve loads types lazily
BASE_N=100000000  # iterations per untraced (and idle) run
HOT_SRC=bench/targets/hot/main.go
SVC_SRC=bench/grpcsvc/main.go

AWAY=(nice -n 19) # what stands for another machine (see the server below)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/riptrace-bench.XXXXXX")
PIDS=() # every process started here, in start order

die() {
	echo "bench: $*" >&2
	exit 1
}

alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && ${st%% *} != Z ]]
}

# stop PID: SIGTERM, up to 15 s to exit (an agent detaches first), then
# SIGKILL.
stop() {
	local pid=$1 i
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? i
	set +e
	# Newest first: tracers before their targets, the server last.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done
	if ((rc == 130)); then
		echo "bench: interrupted" >&2
	elif ((rc != 0)); then
		echo "bench: failed; the last lines of this run's logs:" >&2
		tail -n 5 "$TMP"/*.out "$TMP"/*.err 2>/dev/null | sed 's/^/  /' >&2
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

count() {
	local c
	c=$(grep -c -E -- "$2" "$1" 2>/dev/null || true)
	echo "${c:-0}"
}

# wait_for FILE REGEX COUNT TIMEOUT_S [PID [FAIL_REGEX]]: poll until FILE has
# COUNT lines matching REGEX. Fails at the timeout, when PID has ended, or
# when a line matches FAIL_REGEX. The poll interval grows from 10 to 100 ms
# to leave the CPUs to what is measured: times come from the targets' own
# clocks or from time stamps on the lines, never from when a poll saw them.
wait_for() {
	local file=$1 re=$2 want=$3 timeout=$4 pid=${5:-} fail=${6:-} delay=0.01
	local deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		(($(count "$file" "$re") >= want)) && return 0
		if [[ -n $fail ]] && grep -q -E -- "$fail" "$file" 2>/dev/null; then
			echo "bench: $(grep -E -- "$fail" "$file" | head -1)" >&2
			return 1
		fi
		if [[ -n $pid ]] && ! alive "$pid"; then
			(($(count "$file" "$re") >= want)) && return 0
			echo "bench: pid $pid ended while waiting for '$re' in $(basename "$file")" >&2
			return 1
		fi
		sleep "$delay"
		delay=$(awk -v d="$delay" 'BEGIN { print (d * 2 < 0.1) ? d * 2 : 0.1 }')
	done
	echo "bench: found $(count "$file" "$re") of $want lines matching '$re' in $(basename "$file") after ${timeout}s" >&2
	return 1
}

# quiesce FILE REGEX COUNT: wait until FILE has COUNT lines matching REGEX,
# or no new one came for a second (hits dropped are not coming).
quiesce() {
	local n last=-1 still=0
	while :; do
		n=$(count "$1" "$2")
		((n >= $3)) && return 0
		if ((n == last)); then
			((++still >= 10)) && return 0
		else
			still=0
		fi
		last=$n
		sleep 0.1
	done
}

# stored N: wait until the stream holds N hits of the eBPF agent's hot
# tracepoint, or their count stands still for a second; print the count.
# It asks the NATS server (bench/stored), never the agent, whose CPU is
# measured meanwhile.
stored() {
	"$BIN/stored" -nats "$NATS" -tracepoint "$EBPF_TP" -host bench-ebpf -want "$1"
}

# collections: the eBPF agent's garbage collections so far (its
# GODEBUG=gctrace=1 lines).
collections() { grep -c '^gc [0-9]' "$TMP/agent-hot-ebpf.err" || true; }

# stamp prefixes each line with the time it arrived (EPOCHREALTIME, µs).
stamp() {
	local line
	while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}

marker_line() {
	local l
	l=$(grep -n -F "//@trace($2)" "$1" | cut -d: -f1)
	[[ $l =~ ^[0-9]+$ ]] || die "want exactly one //@trace($2) marker in $1, found: ${l:-none}"
	echo "$l"
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# children PID EXE: the processes whose parent is PID and whose executable
# is EXE.
children() {
	local f pid
	for f in /proc/[0-9]*/status; do
		pid=${f#/proc/}
		pid=${pid%/status}
		if [[ $(awk '/^PPid:/ { print $2 }' "$f" 2>/dev/null) == "$1" && $(readlink "/proc/$pid/exe" 2>/dev/null) == "$2" ]]; then
			echo "$pid"
		fi
	done
}

calc() { awk "BEGIN { printf \"%.10g\", $1 }"; }
# shellcheck disable=SC2059 # FORMAT is the format
fmt() { printf "$1" "$(calc "$2")"; } # FORMAT EXPR
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { # FORMAT VALUE...
	local f=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v f="$f" 'NR == 1 { lo = $1 } { hi = $1 } END { printf f "–" f, lo, hi }'
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
TICK=$(getconf CLK_TCK)
# cpu_s PID...: the CPU time (user + system) the processes have used, in
# seconds; those gone count nothing.
cpu_s() {
	local pid t=0
	for pid in "$@"; do
		[[ -r /proc/$pid/stat ]] || continue
		t=$((t + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
	done
	calc "$t / $TICK"
}
# cpu_ns PID: the CPU time (ns) of PID's threads now alive, from the
# scheduler's statistics: finer than cpu_s's clock ticks (10 ms), for
# spans of tens of ms. A thread that ends is not counted: measure only
# spans in which the process's threads live on.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
# niced_ns PID: the CPU time (ns) of PID's threads now alive at nice 19:
# the eBPF agent's decoding threads (agent/ebpf's yielding).
# It runs no program (only the subshell of its command substitution): it
# is read at the start of a span, whose CPU it would add to.
niced_ns() {
	local f s=0 st ns
	local -a v
	for f in /proc/"$1"/task/*; do
		{ read -r st <"$f/stat" && read -r ns _ <"$f/schedstat"; } 2>/dev/null || continue
		read -r -a v <<<"${st##*) }"
		[[ ${v[16]} == 19 ]] && s=$((s + ns))
	done
	echo "$s"
}
# faults PID: the minor page faults PID has taken so far.
faults() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $8 }'; }
# switches PID: the context switches of PID's threads now alive.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { printf "%d", s }'; }

# --- setup --------------------------------------------------------------------

[[ -x $RT ]] || die "$RT is missing: run \`make bench\`, which builds it first"
mkdir -p "$BIN"
DLV_VERSION=$(go list -m -f '{{.Version}}' github.com/go-delve/delve)
DLV=$BIN/dlv
if ! "$DLV" version 2>/dev/null | grep -q -x "Version: ${DLV_VERSION#v}"; then
	echo "installing dlv $DLV_VERSION into $BIN"
	GOBIN=$BIN go install "github.com/go-delve/delve/cmd/dlv@$DLV_VERSION"
fi
go build -o "$BIN/hot" ./bench/targets/hot
GOWORK=off go build -C bench/grpcsvc -o "$BIN/grpcsvc" .
# Delve's targets run under a name the agent does not manage (it manages
# hot and grpcsvc only), so the two tools never reach for the same process.
go build -o "$BIN/uprobe" ./bench/uprobe
go build -o "$BIN/stored" ./bench/stored
ln -f "$BIN/hot" "$BIN/hot-dlv"
# The agents tell the hot targets apart by name: hot for the Delve backend,
# hot-ebpf and hot-idle for the eBPF backend, hot-bare for the bare uprobe,
# hot-base untraced.
ln -f "$BIN/hot" "$BIN/hot-ebpf"
ln -f "$BIN/hot" "$BIN/hot-idle"
ln -f "$BIN/hot" "$BIN/hot-bare"
ln -f "$BIN/hot" "$BIN/hot-base"
ln -f "$BIN/grpcsvc" "$BIN/grpcsvc-dlv"
# The eBPF agent's service, which the Delve backend's agent does not manage.
ln -f "$BIN/grpcsvc" "$BIN/grpcsvc-ebpf"
HOT_LINE=$(marker_line "$HOT_SRC" hot)
COLD_LINE=$(marker_line "$HOT_SRC" cold)
SVC_LINE=$(marker_line "$SVC_SRC" handle)
SVC_MB=$(calc "$(stat -c %s "$BIN/grpcsvc") / 1e6")

echo "go:       $(go version)"
echo "delve:    $("$DLV" version | sed -n 's/^Version: //p') (the dlv command, and the library in bin/riptrace)"
echo "riptrace: $("$RT" version)"
echo "machine:  $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r), load average $(loadavg)"
echo "targets:  $HOT_SRC:$HOT_LINE; $SVC_SRC:$SVC_LINE, $(fmt %.1f "$SVC_MB") MB"

# dlv_attach NAME PID INIT [stamp]: dlv attached to PID, running the
# commands in INIT, until it says the tracepoint is set. With "stamp", its
# stdout is time-stamped and DLV_T0 and DLV_T1 are set to its start and that
# line; without, nothing slows its output of hits. dlv starts a telemetry
# sidecar process by default; GO_TELEMETRY_CHILD=2 tells
# golang.org/x/telemetry not to, so that dlv is one process, as a worker is.
dlv_attach() {
	DLV_T0=$EPOCHREALTIME
	if [[ ${4:-} == stamp ]]; then
		GO_TELEMETRY_CHILD=2 "$DLV" attach "$2" --allow-non-terminal-interactive=true --init "$3" \
			</dev/null > >(stamp >"$TMP/$1.out") 2>"$TMP/$1.err" &
	else
		GO_TELEMETRY_CHILD=2 "$DLV" attach "$2" --allow-non-terminal-interactive=true --init "$3" \
			</dev/null >"$TMP/$1.out" 2>"$TMP/$1.err" &
	fi
	DLV_PID=$!
	PIDS+=("$DLV_PID")
	wait_for "$TMP/$1.out" '(^| )Tracepoint 1 set at ' 1 120 "$DLV_PID" || die "dlv did not set its tracepoint"
	DLV_T1=$(awk '/ Tracepoint 1 set at / { print $1; exit }' "$TMP/$1.out")
}

# The NATS server and the `riptrace trace` clients stand for other machines:
# in a deployment only the agent runs on the traced host. They run at nice
# 19, so that on these 2 CPUs they take what the traced loop leaves (about
# 120 µs of CPU per hit between them, measured here; with them at normal
# priority the eBPF rows pay for it: 1.7-1.8x the bare uprobe instead of
# 1.1-1.5x).
"${AWAY[@]}" "$RT" server --listen 127.0.0.1:-1 --data "$TMP/data" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_for "$TMP/server.out" '^riptrace server ready: ' 1 30 "$SERVER_PID" || die "the riptrace server did not start"
NATS=$(sed -n 's/^riptrace server ready: \(nats:\/\/127\.0\.0\.1:[0-9]*\) .*/\1/p' "$TMP/server.out")
[[ -n $NATS ]] || die "the server is not on 127.0.0.1: $(cat "$TMP/server.out")"

# start_agent NAME HOST ARGS...: an agent named HOST, with ARGS (its
# --processes and --backend). The stop budget is off: what is measured is the
# cost of every hit, and the budget (10% of each second by default) would
# drop most of them on a hot loop.
start_agent() {
	local name=$1 host=$2
	shift 2
	"$RT" agent --nats "$NATS" --host "$host" --stop-budget 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
	wait_for "$TMP/$name.err" 'msg="agent ready"' 1 30 "$AGENT_PID" || die "the agent did not start"
}

# agent_sees PID...: wait until the PIDs are the processes the agents list,
# so that a tracepoint declared now goes to them at once (an agent scans
# /proc once a second).
agent_sees() {
	local i pids want
	want=$(printf '%s\n' "$@" | sort -u | xargs)
	for ((i = 0; i < 200; i++)); do
		pids=$({ "$RT" hosts --nats "$NATS" --json || true; } | { grep -o '"pid": [0-9]*' || true; } | awk '{ print $2 }' | sort -u | xargs)
		[[ $pids == "$want" ]] && return 0
		sleep 0.05
	done
	die "the agents list pids '$pids', want only $want"
}

# The clients keep what they search of the checkout's history (for the
# builds without vcs.revision) in a cache of this run's: the first of them
# searches, as a developer's first trace from a checkout does, and the rest
# read it back, as a developer's next ones do.
#
# start_trace NAME FILE:LINE PID EXE [ARGS...]: `riptrace trace` with no
# rate limit and ARGS, its stderr time-stamped; waits until it reports the
# tracepoint installed in PID, and sets TRACE_T0 and TRACE_T1 to the start
# and that report.
start_trace() {
	TRACE_T0=$EPOCHREALTIME
	XDG_CACHE_HOME=$TMP/cache "${AWAY[@]}" "$RT" trace --nats "$NATS" --rate 0 --json "${@:5}" "$2" >"$TMP/$1.out" 2> >(stamp >"$TMP/$1.err") &
	TRACE_PID=$!
	PIDS+=("$TRACE_PID")
	wait_for "$TMP/$1.err" " $4\[$3\]: installed: " 1 120 "$TRACE_PID" " $4\[$3\]: error: " || die "riptrace did not install its tracepoint"
	TRACE_T1=$(awk '/: installed: / { print $1; exit }' "$TMP/$1.err")
}

# --- 1. per-hit cost ------------------------------------------------------------

# Hot targets by name: pid, the write end of the fifo that is their stdin,
# and their stdout.
declare -A HOT_PID HOT_FD HOT_RFD HOT_OUT

# start_hot NAME EXE
start_hot() {
	local fd rfd line
	mkfifo "$TMP/$1.in" "$TMP/$1.pipe"
	"$2" <"$TMP/$1.in" >"$TMP/$1.pipe" 2>&1 &
	HOT_PID[$1]=$!
	PIDS+=("$!")
	exec {fd}>"$TMP/$1.in" {rfd}<"$TMP/$1.pipe"
	HOT_FD[$1]=$fd HOT_RFD[$1]=$rfd
	HOT_OUT[$1]=$TMP/$1.out
	hot_line "$1" '^READY pid=' 30 >/dev/null || die "the hot target did not start (see $TMP/$1.out)"
}

# hot_line NAME RE TIMEOUT: read target NAME's output, kept in its .out
# file, until a line matching RE, and print it. The read blocks on the
# target's pipe: a poll of its file (wait_for) saw a loop's end up to
# hundreds of ms late, and the eBPF agent's span (below) grew by as much
# of its idle work.
hot_line() {
	local line
	while IFS= read -r -t "$3" -u "${HOT_RFD[$1]}" line; do
		printf '%s\n' "$line" >>"${HOT_OUT[$1]}"
		[[ $line =~ $2 ]] && { printf '%s\n' "$line"; return 0; }
	done
	echo "bench: target $1 (pid ${HOT_PID[$1]}) ended or said nothing matching '$2' for ${3}s (see ${HOT_OUT[$1]})" >&2
	return 1
}

stop_hot() {
	local fd=${HOT_FD[$1]} rfd=${HOT_RFD[$1]}
	stop "${HOT_PID[$1]}"
	exec {fd}>&- {rfd}<&-
}

# loop NAME ITERATIONS: run target NAME's loop once; prints the elapsed ns.
loop() {
	local line
	echo "run $2" >&"${HOT_FD[$1]}"
	line=$(hot_line "$1" '^elapsed ' 300) || return 1
	echo "${line##*ns=}"
}

# iterations TOOL: loop length of a measured run of TOOL.
iterations() {
	case $1 in
	dlv | rt) echo "$N" ;;
	rte | bare) echo "$NF" ;;
	base | idle) echo "$BASE_N" ;;
	esac
}

# cost TOOL RUN: µs per hit of TOOL's run RUN over the untraced loop.
cost() {
	local n
	n=$(iterations "$1")
	calc "(${RAW[$1,$2]} - $BASE_NS * $n) / $n / 1000"
}

echo
echo "per-hit cost: $HIT_RUNS runs per tool, alternating, of $N hits (ptrace) or $NF hits (uprobes), after $WARMUP warm-up hits (ptrace) or $WARM_FAST (uprobes)"

# The untraced target runs alongside the others, so that its runs alternate
# with theirs and see the same load.
start_hot base "$BIN/hot-base"
loop base 1000000 >/dev/null

# Delve: an init script sets the tracepoint and continues; dlv then prints
# "> goroutine(G): main.step(i, acc)" for each hit.
start_hot dlv "$BIN/hot-dlv"
printf 'trace %s:%d\ncontinue\n' "$ROOT/$HOT_SRC" "$HOT_LINE" >"$TMP/dlv-hot.init"
dlv_attach dlv-hot "${HOT_PID[dlv]}" "$TMP/dlv-hot.init"
DLV_HOT_PID=$DLV_PID

# RipTrace: two agents on the embedded server, one per backend, and one
# `riptrace trace` each; the eBPF agent also has hot-idle, traced on a line
# its loop never runs.
start_hot rt "$BIN/hot"
start_hot rte "$BIN/hot-ebpf"
start_hot idle "$BIN/hot-idle"
start_agent agent-hot-delve bench-delve --processes hot --backend delve
AGENT_DELVE_PID=$AGENT_PID
GODEBUG=gctrace=1 start_agent agent-hot-ebpf bench-ebpf --processes hot-ebpf --processes hot-idle --backend ebpf
AGENT_EBPF_PID=$AGENT_PID
agent_sees "${HOT_PID[rt]}" "${HOT_PID[rte]}" "${HOT_PID[idle]}"
start_trace trace-hot "$HOT_SRC:$HOT_LINE" "${HOT_PID[rt]}" hot --hosts bench-delve
TRACE_DELVE_PID=$TRACE_PID
start_trace trace-hot-ebpf "$HOT_SRC:$HOT_LINE" "${HOT_PID[rte]}" hot-ebpf --processes hot-ebpf
TRACE_EBPF_PID=$TRACE_PID
EBPF_TP=$(sed -n 's/.* as \(trace-[0-9a-f]*\) (Ctrl-C to stop).*/\1/p' "$TMP/trace-hot-ebpf.err" | head -1)
[[ -n $EBPF_TP ]] || die "riptrace trace did not name its tracepoint (see $TMP/trace-hot-ebpf.err)"
start_trace trace-idle "$HOT_SRC:$COLD_LINE" "${HOT_PID[idle]}" hot-idle --processes hot-idle
TRACE_IDLE_PID=$TRACE_PID

# The bare uprobe: a counter at the same line.
start_hot bare "$BIN/hot-bare"
"$BIN/uprobe" -pid "${HOT_PID[bare]}" "$HOT_SRC:$HOT_LINE" >"$TMP/uprobe.out" 2>"$TMP/uprobe.err" &
UPROBE_PID=$!
PIDS+=("$UPROBE_PID")
wait_for "$TMP/uprobe.out" '^READY pid=' 1 60 "$UPROBE_PID" || die "the bare uprobe did not attach"

for tool in dlv rt; do loop "$tool" "$WARMUP" >/dev/null; done
# The uprobe tools warm up on WARM_FAST hits: a fresh eBPF agent's heap
# grows to its working size over its first thousands of hits, each page
# it touches first a fault (12-15 µs here), a cost it pays once. What
# those hits cost it is measured and shown apart.
loop bare "$WARM_FAST" >/dev/null
FIRST_NS=$(cpu_ns "$AGENT_EBPF_PID")
loop rte "$WARM_FAST" >/dev/null
FIRST_HITS=$(stored "$WARM_FAST")
FIRST_NS=$(($(cpu_ns "$AGENT_EBPF_PID") - FIRST_NS))
loop idle 1000000 >/dev/null
# CPU per hit counts from here: the warm-up hits are out, and the Delve
# backend's worker (a child of its agent) is running.
wait_for "$TMP/trace-hot.out" "\"line\":$HOT_LINE," "$WARMUP" 60 "$TRACE_DELVE_PID" || die "the Delve backend did not deliver its warm-up hits"
wait_for "$TMP/trace-hot-ebpf.out" "\"line\":$HOT_LINE," "$WARM_FAST" 60 "$TRACE_EBPF_PID" || die "the eBPF backend did not deliver its warm-up hits"
mapfile -t DELVE_WORKERS < <(children "$AGENT_DELVE_PID" "$RT")
cpu_hits() { # TOOL: the CPU seconds of what serves TOOL's hits, and its hits received
	case $1 in
	ebpf) echo "$(cpu_s "$AGENT_EBPF_PID") $(cpu_s "$TRACE_EBPF_PID") $(count "$TMP/trace-hot-ebpf.out" "\"line\":$HOT_LINE,")" ;;
	delve) echo "$(cpu_s "$AGENT_DELVE_PID" "${DELVE_WORKERS[@]}") $(cpu_s "$TRACE_DELVE_PID") $(count "$TMP/trace-hot.out" "\"line\":$HOT_LINE,")" ;;
	server) cpu_s "$SERVER_PID" ;;
	esac
}
read -r CPU0_EBPF_AGENT CPU0_EBPF_CLIENT HITS0_EBPF < <(cpu_hits ebpf)
# The eBPF agent's own spans: from the start of each of its runs until the
# stream has stored its last hit (the NATS server says so: see stored).
# Its CPU per hit over them is what decoding and
# publishing a hit costs it; over the whole runs, which the other tools'
# runs make 10-20 times longer, its CPU also holds what it does while no
# hit comes (its scans of /proc, its clock, its watermarks), which is
# shown apart, per second.
SPAN_NS=0 SPAN_HITS=0 SPAN_S=0 NICED_NS=0 WHOLE_NS0=$(cpu_ns "$AGENT_EBPF_PID") WHOLE_T0=$EPOCHREALTIME
read -r CPU0_DELVE_AGENT CPU0_DELVE_CLIENT HITS0_DELVE < <(cpu_hits delve)
CPU0_SERVER=$(cpu_hits server)
declare -A RAW # tool,run → ns per loop
agent_cost=()  # the eBPF agent's CPU per hit over each of its spans, µs
agent_gcs=()   # and its collections in each
agent_faults=() # and its page faults per hit in each
agent_cs=()     # and its context switches per hit in each
stored_hits=$FIRST_HITS # of the hot tracepoint, in the stream
for ((i = 1; i <= HIT_RUNS; i++)); do
	# The eBPF agent decodes its hits after the fact, on the machine's
	# CPUs: its run comes last, and the next round waits until its hits are
	# out, so that no other run shares the CPUs with that decoding.
	for tool in base idle dlv rt bare rte; do
		if [[ $tool == rte ]]; then
			# Its CPU and its clock are read last, as the run starts.
			span_gc=$(collections) span_pf=$(faults "$AGENT_EBPF_PID") span_cs=$(switches "$AGENT_EBPF_PID") span_niced=$(niced_ns "$AGENT_EBPF_PID")
			span_ns=$(cpu_ns "$AGENT_EBPF_PID") span_t=$EPOCHREALTIME
		fi
		RAW[$tool,$i]=$(loop "$tool" "$(iterations "$tool")")
	done
	# The span ends when the stream has stored the run's hits: what the
	# clients do after (holding hits to show them in order) is not the
	# agent's work, though it stays active meanwhile.
	now_hits=$(stored $((stored_hits + NF)))
	run_ns=$(($(cpu_ns "$AGENT_EBPF_PID") - span_ns))
	NICED_NS=$((NICED_NS + $(niced_ns "$AGENT_EBPF_PID") - span_niced))
	SPAN_S=$(calc "$SPAN_S + $EPOCHREALTIME - $span_t")
	agent_gcs+=("$(($(collections) - span_gc))")
	run_hits=$((now_hits - stored_hits)) stored_hits=$now_hits
	agent_cs+=("$(fmt %.2f "($(switches "$AGENT_EBPF_PID") - $span_cs) / ($run_hits > 0 ? $run_hits : 1)")")
	agent_faults+=("$(fmt %.2f "($(faults "$AGENT_EBPF_PID") - $span_pf) / ($run_hits > 0 ? $run_hits : 1)")")
	quiesce "$TMP/trace-hot-ebpf.out" "\"line\":$HOT_LINE," $((WARM_FAST + i * NF))
	SPAN_NS=$((SPAN_NS + run_ns))
	SPAN_HITS=$((SPAN_HITS + run_hits))
	agent_cost+=("$(calc "$run_ns / 1000 / ($run_hits > 0 ? $run_hits : 1)")")
done
base=()
for ((i = 1; i <= HIT_RUNS; i++)); do base+=("$(calc "${RAW[base,$i]} / $BASE_N")"); done
BASE_NS=$(median "${base[@]}")
printf '  untraced: %d runs of %d iterations, %s ns/iteration\n' "$HIT_RUNS" "$BASE_N" "$(range %.2f "${base[@]}")"
dlv_cost=()
rt_cost=()
rte_cost=()
bare_cost=()
idle_ratio=()
for ((i = 1; i <= HIT_RUNS; i++)); do
	dlv_cost+=("$(cost dlv "$i")")
	rt_cost+=("$(cost rt "$i")")
	rte_cost+=("$(cost rte "$i")")
	bare_cost+=("$(cost bare "$i")")
	# The idle target against the untraced run next to it.
	idle_ratio+=("$(calc "${RAW[idle,$i]} / ${RAW[base,$i]}")")
	printf '  run %d: delve trace %s µs/hit; riptrace delve %s µs/hit; bare uprobe %s µs/hit; riptrace ebpf %s µs/hit; attached, idle %s× untraced\n' "$i" \
		"$(fmt %.0f "${dlv_cost[-1]}")" "$(fmt %.0f "${rt_cost[-1]}")" "$(fmt %.1f "${bare_cost[-1]}")" "$(fmt %.1f "${rte_cost[-1]}")" "$(fmt %.2f "${idle_ratio[-1]}")"
done
WANT_HITS=$((WARMUP + HIT_RUNS * N))
WANT_FAST=$((WARM_FAST + HIT_RUNS * NF))
# Hits are printed (dlv) or published (agent) before the target resumes,
# but reach the files later; the eBPF agent decodes them after the fact.
wait_for "$TMP/dlv-hot.out" '^> goroutine\(' "$WANT_HITS" 30 "$DLV_HOT_PID" || true
wait_for "$TMP/trace-hot.out" "\"line\":$HOT_LINE," "$WANT_HITS" 60 "$TRACE_DELVE_PID" || true
wait_for "$TMP/trace-hot-ebpf.out" "\"line\":$HOT_LINE," "$WANT_FAST" 120 "$TRACE_EBPF_PID" || true
read -r CPU1_EBPF_AGENT CPU1_EBPF_CLIENT HITS1_EBPF < <(cpu_hits ebpf)
WHOLE_NS=$(($(cpu_ns "$AGENT_EBPF_PID") - WHOLE_NS0)) WHOLE_S=$(calc "$EPOCHREALTIME - $WHOLE_T0")
read -r CPU1_DELVE_AGENT CPU1_DELVE_CLIENT HITS1_DELVE < <(cpu_hits delve)
CPU1_SERVER=$(cpu_hits server)
DLV_HITS=$(count "$TMP/dlv-hot.out" '^> goroutine\(')
RT_HITS=$(count "$TMP/trace-hot.out" "\"line\":$HOT_LINE,")
RTE_HITS=$(count "$TMP/trace-hot-ebpf.out" "\"line\":$HOT_LINE,")
IDLE_HITS=$(count "$TMP/trace-idle.out" '"line":')
dropped() { { grep -o '"dropped":[0-9]*' "$1" || true; } | awk -F: '{ s += $2 } END { print s + 0 }'; }
RT_DROPPED=$(dropped "$TMP/trace-hot.out")
RTE_DROPPED=$(dropped "$TMP/trace-hot-ebpf.out")
stop "$UPROBE_PID"
BARE_HITS=$(sed -n 's/^COUNT n=//p' "$TMP/uprobe.out")
stop "$TRACE_DELVE_PID"
stop "$TRACE_EBPF_PID"
stop "$TRACE_IDLE_PID"
for tool in base rt rte idle bare; do stop_hot "$tool"; done
stop "$AGENT_DELVE_PID"
stop "$AGENT_EBPF_PID"
stop_hot dlv
stop "$DLV_HOT_PID"

# --- 2. time to live, 3. pause and 4. memory, on the gRPC service ---------------

# start_svc NAME EXE: a fresh gRPC service.
start_svc() {
	"$2" >"$TMP/$1.out" 2>&1 &
	SVC_PID=$!
	PIDS+=("$SVC_PID")
	wait_for "$TMP/$1.out" '^READY pid=' 1 30 "$SVC_PID" || die "the gRPC service did not start"
	SVC_ADDR=$(sed -n 's/^READY pid=[0-9]* addr=//p' "$TMP/$1.out")
}

# Clients of the service run under the name the agent does not manage.

# hit_svc: one Check request, which runs the traced line once.
hit_svc() { timeout 60 "$BIN/grpcsvc-dlv" -check "$SVC_ADDR" >/dev/null; }

# start_probe NAME: call Check every 5 ms from now on.
start_probe() {
	"$BIN/grpcsvc-dlv" -probe "$SVC_ADDR" >"$TMP/$1.out" 2>&1 &
	PROBE_PID=$!
	PIDS+=("$PROBE_PID")
	wait_for "$TMP/$1.out" '^PROBING$' 1 30 "$PROBE_PID" || die "the probe did not start"
}

# end_probe NAME: stop probing; sets PAUSE to the longest call, in seconds.
end_probe() {
	stop "$PROBE_PID"
	wait_for "$TMP/$1.out" '^PROBE ' 1 1 || die "the probe failed"
	PAUSE=$(calc "$(sed -n 's/^PROBE .*max_ns=//p' "$TMP/$1.out") / 1e9")
}

echo
echo "time to live: $LIVE_RUNS fresh processes per tool, alternating; each called every 5 ms from before"
echo "the tool starts until a traced call returns: the longest call is how long the service stood still"
# The Delve backend: these measure what attaching with ptrace costs.
start_agent agent-svc bench --processes grpcsvc --backend delve
AGENT_SVC_PID=$AGENT_PID
# The eBPF backend reads an executable's debug info when it discovers a
# process of it, and keeps it: a first process, traced as soon as the agent
# lists it, waits for that read; the measured ones are fresh processes of
# the same executable (replicas, restarts), traced once the agent lists
# them. The first one's time is shown too.
start_agent agent-svc-ebpf bench-svc-ebpf --processes grpcsvc-ebpf --backend ebpf
AGENT_SVC_EBPF_PID=$AGENT_PID
AGENT_PID=$AGENT_SVC_PID
# live_ebpf NAME: a fresh eBPF-traced service from `riptrace trace` to its
# first hit; sets RTE_LIVE and PAUSE.
live_ebpf() {
	start_svc "svc-$1" "$BIN/grpcsvc-ebpf"
	agent_sees "$SVC_PID"
	start_probe "probe-$1"
	start_trace "trace-$1" "$SVC_SRC:$SVC_LINE" "$SVC_PID" grpcsvc-ebpf --hosts bench-svc-ebpf
	hit_svc
	wait_for "$TMP/trace-$1.out" "\"line\":$SVC_LINE," 1 30 "$TRACE_PID" || die "riptrace (ebpf) reported no hit in the gRPC service"
	end_probe "probe-$1"
	RTE_LIVE=$(calc "$TRACE_T1 - $TRACE_T0")
}
live_ebpf rte0
RTE_LIVE_FIRST=$RTE_LIVE
stop "$TRACE_PID"
stop "$SVC_PID"
rte_live=()
rte_pause=()
printf 'trace %s:%d\ncontinue\n' "$ROOT/$SVC_SRC" "$SVC_LINE" >"$TMP/dlv-svc.init"
dlv_live=()
rt_live=()
dlv_pause=()
rt_pause=()
for ((i = 1; i <= LIVE_RUNS; i++)); do
	# dlv: from starting `dlv attach` to its "Tracepoint 1 set".
	start_svc "svc-dlv$i" "$BIN/grpcsvc-dlv"
	start_probe "probe-dlv$i"
	dlv_attach "dlv-svc$i" "$SVC_PID" "$TMP/dlv-svc.init" stamp
	# A call that returns shows the service runs again, and the tracepoint
	# reports it.
	hit_svc
	wait_for "$TMP/dlv-svc$i.out" ' > goroutine\(' 1 30 "$DLV_PID" || die "dlv reported no hit in the gRPC service"
	end_probe "probe-dlv$i"
	dlv_live+=("$(calc "$DLV_T1 - $DLV_T0")")
	dlv_pause+=("$PAUSE")
	if ((i == LIVE_RUNS)); then
		DLV_RSS=$(status_kb "$DLV_PID" VmRSS)
		DLV_HWM=$(status_kb "$DLV_PID" VmHWM)
	fi
	stop "$SVC_PID"
	stop "$DLV_PID"

	# riptrace: from starting `riptrace trace` to its "installed" line.
	start_svc "svc-rt$i" "$BIN/grpcsvc"
	agent_sees "$SVC_PID"
	start_probe "probe-rt$i"
	start_trace "trace-svc$i" "$SVC_SRC:$SVC_LINE" "$SVC_PID" grpcsvc
	hit_svc
	wait_for "$TMP/trace-svc$i.out" "\"line\":$SVC_LINE," 1 30 "$TRACE_PID" || die "riptrace reported no hit in the gRPC service"
	end_probe "probe-rt$i"
	rt_live+=("$(calc "$TRACE_T1 - $TRACE_T0")")
	rt_pause+=("$PAUSE")
	attach=$({ grep "msg=attached .*pid=$SVC_PID " "$TMP/agent-svc.err" || true; } | sed -n 's/.* took=\([0-9.]*\)\(m\{0,1\}s\).*/\1 \2/p' | awk '{ printf "%.2f", ($2 == "s") ? $1 : $1 / 1000 }')
	printf '  run %d: dlv attach + trace %s s, paused %s s; riptrace trace %s s (the agent attaching: %s s), paused %s s\n' "$i" \
		"$(fmt %.2f "${dlv_live[-1]}")" "$(fmt %.2f "${dlv_pause[-1]}")" "$(fmt %.2f "${rt_live[-1]}")" "${attach:-?}" "$(fmt %.2f "${rt_pause[-1]}")"
	if ((i == LIVE_RUNS)); then
		# The agent's children: the Delve worker, and in the Delve
		# backend's int3 fallback its watchdog (the same binary,
		# RIPTRACE_DELVE_WATCHDOG in its environment); uprobe mode has none.
		workers=() watchdogs=()
		for c in $(children "$AGENT_PID" "$RT"); do
			if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -q '^RIPTRACE_DELVE_WATCHDOG=.'; then
				watchdogs+=("$c")
			else
				workers+=("$c")
			fi
		done
		((${#workers[@]} == 1 && ${#watchdogs[@]} <= 1)) || die "want one Delve worker (and at most its watchdog) under the agent (pid $AGENT_PID), found ${#workers[@]} and ${#watchdogs[@]}"
		AGENT_RSS=$(status_kb "$AGENT_PID" VmRSS)
		AGENT_HWM=$(status_kb "$AGENT_PID" VmHWM)
		WORKER_RSS=$(status_kb "${workers[0]}" VmRSS)
		WORKER_HWM=$(status_kb "${workers[0]}" VmHWM)
		for w in "${watchdogs[@]}"; do
			WORKER_RSS=$((WORKER_RSS + $(status_kb "$w" VmRSS)))
			WORKER_HWM=$((WORKER_HWM + $(status_kb "$w" VmHWM)))
		done
	fi
	stop "$TRACE_PID"
	stop "$SVC_PID"

	live_ebpf "rte$i"
	rte_live+=("$RTE_LIVE")
	rte_pause+=("$PAUSE")
	printf '  run %d: riptrace trace (ebpf) %s s, paused %s s\n' "$i" "$(fmt %.3f "${rte_live[-1]}")" "$(fmt %.3f "${rte_pause[-1]}")"
	if ((i == LIVE_RUNS)); then
		AGENT_EBPF_RSS=$(status_kb "$AGENT_SVC_EBPF_PID" VmRSS)
		AGENT_EBPF_HWM=$(status_kb "$AGENT_SVC_EBPF_PID" VmHWM)
	fi
	stop "$TRACE_PID"
	stop "$SVC_PID"
done
stop "$AGENT_PID"
stop "$AGENT_SVC_EBPF_PID"

# --- report -----------------------------------------------------------------------

DLV_COST=$(median "${dlv_cost[@]}")
RT_COST=$(median "${rt_cost[@]}")
RTE_COST=$(median "${rte_cost[@]}")
BARE_COST=$(median "${bare_cost[@]}")
IDLE_RATIO=$(median "${idle_ratio[@]}")
DLV_LIVE=$(median "${dlv_live[@]}")
RT_LIVE=$(median "${rt_live[@]}")
DLV_PAUSE=$(median "${dlv_pause[@]}")
RT_PAUSE=$(median "${rt_pause[@]}")
RTE_LIVE=$(median "${rte_live[@]}")
RTE_PAUSE=$(median "${rte_pause[@]}")
per_hit() { fmt %.1f "($2 - $1) * 1e6 / ($4 - $3 > 0 ? $4 - $3 : 1)"; } # CPU0 CPU1 HITS0 HITS1: µs
EBPF_HITS=$((HITS1_EBPF - HITS0_EBPF))
DELVE_HITS=$((HITS1_DELVE - HITS0_DELVE))
AGENT_EBPF_WHOLE=$(per_hit "$CPU0_EBPF_AGENT" "$CPU1_EBPF_AGENT" "$HITS0_EBPF" "$HITS1_EBPF")
AGENT_EBPF_CPU=$(fmt %.1f "$SPAN_NS / 1000 / ($SPAN_HITS > 0 ? $SPAN_HITS : 1)")
AGENT_EBPF_NICED=$(fmt %.1f "$NICED_NS / 1000 / ($SPAN_HITS > 0 ? $SPAN_HITS : 1)")
AGENT_EBPF_FIRST=$(fmt %.1f "$FIRST_NS / 1000 / ($FIRST_HITS > 0 ? $FIRST_HITS : 1)")
AGENT_EBPF_RUNS=$(for c in "${agent_cost[@]}"; do fmt %.1f "$c"; echo; done | paste -sd' ')
AGENT_EBPF_IDLE=$(fmt %.1f "($WHOLE_NS - $SPAN_NS) / 1e6 / ($WHOLE_S - $SPAN_S > 0 ? $WHOLE_S - $SPAN_S : 1)")
# The spans last until the stream has stored the run's last hit: meanwhile
# the agent also does what it does each second with or without hits (its
# scan of /proc, the watermarks). Its rate
# outside the spans, over their length, estimates that share; the goal is
# held to the whole of the span's CPU all the same.
AGENT_EBPF_SPAN_IDLE=$(fmt %.1f "$AGENT_EBPF_IDLE * $SPAN_S * 1000 / ($SPAN_HITS > 0 ? $SPAN_HITS : 1)")
mib() { fmt %.0f "$1 / 1024"; }
row() { printf '  %-24s %10s %-8s %6s   %s\n' "$@" | sed 's/ *$//'; }

echo
echo "per-hit cost (median of $HIT_RUNS runs, target ${HOT_SRC%/main.go}; N=$N hits with ptrace, $NF with uprobes)"
row untraced "$(fmt %.4f "$BASE_NS / 1000")" µs/iter 1.00x ""
row "attached, idle (ebpf)" "$(fmt %.4f "$IDLE_RATIO * $BASE_NS / 1000")" µs/iter "$(fmt %.2fx "$IDLE_RATIO")" "range $(range %.2f "${idle_ratio[@]}")x, each against the untraced run beside it; the eBPF agent attached, its tracepoint on a line the loop never runs ($IDLE_HITS hits); goal 1.00x"
row "bare uprobe" "$(fmt %.1f "$BARE_COST")" µs/hit 1.00x "range $(range %.1f "${bare_cost[@]}"); $BARE_HITS/$WANT_FAST hits counted"
row "riptrace (ebpf)" "$(fmt %.1f "$RTE_COST")" µs/hit "$(fmt %.2fx "$RTE_COST / $BARE_COST")" "range $(range %.1f "${rte_cost[@]}"); $RTE_HITS/$WANT_FAST hits received, $RTE_DROPPED dropped; goal ≤ 1.1x the bare uprobe (make bench-perhit measures it alone)"
row "delve trace" "$(fmt %.0f "$DLV_COST")" µs/hit 1.00x "range $(range %.0f "${dlv_cost[@]}"); $DLV_HITS/$WANT_HITS hits printed"
row "riptrace (delve)" "$(fmt %.0f "$RT_COST")" µs/hit "$(fmt %.2fx "$RT_COST / $DLV_COST")" "range $(range %.0f "${rt_cost[@]}"); $RT_HITS/$WANT_HITS hits received, $RT_DROPPED dropped; goal ≤ 0.5x"
row "riptrace (ebpf)" "$(fmt %.1f "$RTE_COST")" µs/hit "$(fmt %.3fx "$RTE_COST / $DLV_COST")" "against delve trace"
echo "CPU time per hit received in those runs (user + system, of each process over the runs)"
row "agent (ebpf)" "$AGENT_EBPF_CPU" µs/hit "" "decoding and publishing $SPAN_HITS hits: from the start of each of its runs until the stream stored its last hit ($(fmt %.1f "$SPAN_S") s), about $AGENT_EBPF_SPAN_IDLE µs of it its idle work over those seconds, $AGENT_EBPF_NICED µs its niced decoding thread's (the rest: the reader, publishing, the runtime); run by run $AGENT_EBPF_RUNS µs, with ${agent_gcs[*]} collections, ${agent_faults[*]} page faults and ${agent_cs[*]} context switches a hit; goal ≤ 10 µs"
row "agent (ebpf), first hits" "$AGENT_EBPF_FIRST" µs/hit "" "a fresh agent's first $FIRST_HITS hits (the warm-up), its heap growing to its working size"
row "agent (ebpf), all runs" "$AGENT_EBPF_WHOLE" µs/hit "" "$EBPF_HITS hits over all the tools' runs ($(fmt %.0f "$WHOLE_S") s), with what it does while no hit comes: $AGENT_EBPF_IDLE ms of CPU a second outside its runs"
row "riptrace trace (ebpf)" "$(per_hit "$CPU0_EBPF_CLIENT" "$CPU1_EBPF_CLIENT" "$HITS0_EBPF" "$HITS1_EBPF")" µs/hit "" "the client, at nice 19"
row "agent+worker (delve)" "$(per_hit "$CPU0_DELVE_AGENT" "$CPU1_DELVE_AGENT" "$HITS0_DELVE" "$HITS1_DELVE")" µs/hit "" "$DELVE_HITS hits"
row "riptrace trace (delve)" "$(per_hit "$CPU0_DELVE_CLIENT" "$CPU1_DELVE_CLIENT" "$HITS0_DELVE" "$HITS1_DELVE")" µs/hit "" "the client, at nice 19"
row "server" "$(per_hit "$CPU0_SERVER" "$CPU1_SERVER" 0 $((EBPF_HITS + DELVE_HITS)))" µs/hit "" "the hits of both backends, at nice 19"
echo "time to live, $(fmt %.1f "$SVC_MB") MB gRPC service (median of $LIVE_RUNS)"
row "dlv attach + trace" "$(fmt %.2f "$DLV_LIVE")" s 1.00x "range $(range %.2f "${dlv_live[@]}")"
row "riptrace trace" "$(fmt %.2f "$RT_LIVE")" s "$(fmt %.2fx "$RT_LIVE / $DLV_LIVE")" "range $(range %.2f "${rt_live[@]}"); goal ≤ 1 s"
row "riptrace trace (ebpf)" "$(fmt %.3f "$RTE_LIVE")" s "$(fmt %.3fx "$RTE_LIVE / $DLV_LIVE")" "range $(range %.3f "${rte_live[@]}"), fresh processes of an executable the agent had read, from a checkout whose history the client had searched (see start_trace); its first process, traced once listed: $(fmt %.2f "$RTE_LIVE_FIRST") s; goal ≤ 0.25 s"
echo "longest pause of that service meanwhile (median of $LIVE_RUNS)"
row "dlv attach + trace" "$(fmt %.2f "$DLV_PAUSE")" s 1.00x "range $(range %.2f "${dlv_pause[@]}")"
row "riptrace trace" "$(fmt %.2f "$RT_PAUSE")" s "$(fmt %.2fx "$RT_PAUSE / $DLV_PAUSE")" "range $(range %.2f "${rt_pause[@]}")"
row "riptrace trace (ebpf)" "$(fmt %.3f "$RTE_PAUSE")" s "$(fmt %.3fx "$RTE_PAUSE / $DLV_PAUSE")" "range $(range %.3f "${rte_pause[@]}")"
echo "memory while attached to it, after hits (VmRSS)"
row dlv "$(mib "$DLV_RSS")" MiB 1.00x "peak $(mib "$DLV_HWM") MiB"
row "riptrace agent+worker (+watchdog)" "$(mib "$AGENT_RSS")+$(mib "$WORKER_RSS")" MiB "$(fmt %.2fx "($AGENT_RSS + $WORKER_RSS) / $DLV_RSS")" "peak $(mib "$AGENT_HWM")+$(mib "$WORKER_HWM") MiB"
row "riptrace agent (ebpf)" "$(mib "$AGENT_EBPF_RSS")" MiB "$(fmt %.2fx "$AGENT_EBPF_RSS / $DLV_RSS")" "peak $(mib "$AGENT_EBPF_HWM") MiB; it keeps the executable's debug info for its next processes"
echo "load average at the end: $(loadavg) on $(nproc) CPUs (other work on the machine widens the ranges)"
goal() { # NAME FIGURE MET
	if (($(calc "$3"))); then echo "goal: $1: met ($2)"; else echo "goal: $1: not met ($2)"; fi
}
goal "agent CPU ≤ 10 µs per decoded hit (ebpf)" "$AGENT_EBPF_CPU µs over its runs (run by run $AGENT_EBPF_RUNS); $AGENT_EBPF_FIRST µs over a fresh agent's first $FIRST_HITS; $AGENT_EBPF_WHOLE µs over all runs, with $AGENT_EBPF_IDLE ms/s of idle work" "$AGENT_EBPF_CPU <= 10"
goal "eBPF per hit ≤ 1.1× a bare uprobe" "$(fmt %.2f "$RTE_COST / $BARE_COST")×, median of the runs" "$RTE_COST / $BARE_COST <= 1.1"
goal "time to live ≤ 250 ms with eBPF, after discovery" "median $(fmt %.0f "$RTE_LIVE * 1000") ms" "$RTE_LIVE <= 0.25"
if ((DLV_HITS != WANT_HITS || RT_HITS != WANT_HITS || RTE_HITS + RTE_DROPPED != WANT_FAST || ${BARE_HITS:-0} != WANT_FAST)); then
	echo "bench: warning: a tool reported fewer hits than the target ran (see the hits above)" >&2
fi
