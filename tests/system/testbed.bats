#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
# The test bed itself: cluster up, multi-node jobs, preemption with requeue,
# and CRIU working in the guest kernel.

setup() {
	load common
	WORK=$KFDCR_SHARED/test-$BATS_TEST_NUMBER
	rm -rf "$WORK"
	mkdir -p "$WORK"
}

teardown() {
	common_teardown
}

@test "testbed: every node reaches idle" {
	run -0 sinfo -h -N -p low -o '%N %t'
	echo "$output"
	[ "$(grep -c ' idle$' <<<"$output")" -eq "$KFDCR_NODES" ]
	for ((i = 1; i <= KFDCR_NODES; i++)); do
		grep -q "^node$i idle$" <<<"$output"
	done
}

@test "testbed: a job across all nodes runs and prints from each node" {
	run -0 srun -N "$KFDCR_NODES" --ntasks-per-node=1 -l \
		bash -c 'echo "hello from $(hostname) $SLURM_NODEID"'
	echo "$output"
	for ((i = 1; i <= KFDCR_NODES; i++)); do
		grep -q "hello from node$i " <<<"$output"
	done
	[ "$(grep -c 'hello from' <<<"$output")" -eq "$KFDCR_NODES" ]
}

@test "testbed: a batch job across all nodes writes from each node to the shared folder" {
	job=$(submit -N "$KFDCR_NODES" -o "$WORK/out.%j" --wrap \
		"srun --ntasks-per-node=1 bash -c 'hostname > $WORK/from.\$(hostname)'")
	wait_for 60 "[ \"\$(scontrol -o show job $job | grep -o 'JobState=[A-Z]*')\" = JobState=COMPLETED ]"
	for ((i = 1; i <= KFDCR_NODES; i++)); do
		[ "$(cat "$WORK/from.node$i")" = "node$i" ]
	done
}

@test "testbed: a low job is preempted by a high job, gets its --signal, is requeued and runs again" {
	# The low job takes every CPU of every node, traps its --signal and
	# records each start with its restart count.
	cat >"$WORK/low.sh" <<EOF2
#!/bin/bash
echo "start restart=\${SLURM_RESTART_COUNT:-0}" >> $WORK/low.events
trap 'echo "signal USR1 restart=\${SLURM_RESTART_COUNT:-0}" >> $WORK/low.events' USR1
for i in \$(seq 600); do sleep 0.2; done
EOF2
	low=$(submit -p low -N "$KFDCR_NODES" --exclusive --signal=B:USR1@600 \
		-o "$WORK/low.out" "$WORK/low.sh")
	wait_for 60 "grep -q 'start restart=0' $WORK/low.events"
	[ "$(job_state "$low")" = RUNNING ]

	high=$(submit -p high -N "$KFDCR_NODES" --exclusive -o "$WORK/high.out" \
		--wrap 'sleep 1; echo high done')
	# The low job's signal comes first, then it is requeued ...
	wait_for 60 "grep -q 'signal USR1 restart=0' $WORK/low.events"
	wait_for 60 "[ \"\$(scontrol -o show job $high | grep -o 'JobState=[A-Z]*')\" = JobState=COMPLETED ]"
	grep -q 'high done' "$WORK/high.out"
	[ "$(job_field "$low" Restarts)" -eq 1 ]
	# ... and runs again once the high job is done.
	wait_for 90 "grep -q 'start restart=1' $WORK/low.events"
	[ "$(job_state "$low")" = RUNNING ]
	cat "$WORK/low.events"
	# The signal was recorded before the second start.
	run -0 cat "$WORK/low.events"
	[ "${lines[0]}" = "start restart=0" ]
	[ "${lines[1]}" = "signal USR1 restart=0" ]
	[ "${lines[2]}" = "start restart=1" ]
}

@test "testbed: criu dumps a running counter and restores it, and the counter continues" {
	cat >"$WORK/counter.sh" <<'EOF2'
i=0
while :; do
	i=$((i + 1))
	echo "$i"
	sleep 0.05
done
EOF2
	setsid bash "$WORK/counter.sh" </dev/null >"$WORK/counter.out" 2>/dev/null &
	pid=$!
	wait_for 20 "[ \$(wc -l < $WORK/counter.out) -ge 20 ]"

	mkdir -p "$WORK/img"
	log_run criu dump -t "$pid" -D "$WORK/img" -o "$KFDCR_LOGS/criu-counter-dump.log" -v4
	! kill -0 "$pid" 2>/dev/null || false
	before=$(tail -n 1 "$WORK/counter.out")
	sleep 1
	# Nothing ran while dumped.
	[ "$(tail -n 1 "$WORK/counter.out")" = "$before" ]

	log_run criu restore -d -D "$WORK/img" -o "$KFDCR_LOGS/criu-counter-restore.log" -v4
	kill -0 "$pid"
	wait_for 20 "[ \$(tail -n 1 $WORK/counter.out) -ge $((before + 20)) ]"
	kill "$pid"
	# Every value from 1 on, exactly once, in order: it continued, not restarted.
	run -0 awk 'NR != $1 { print "line " NR " is " $1; bad = 1 } END { exit bad }' "$WORK/counter.out"
}
