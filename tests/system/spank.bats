#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The Slurm layer (spank_kfdcr.so, kfdcr-helper, kfdcr-init, kfdcr): jobs
# submitted by ordinary users with sbatch --checkpoint, preempted by
# another user's job in the high partition, requeued, and restored on
# other nodes and GPUs; see docs/design.md.  Every job's GPU work is the
# kfdsim workload (tests/kfd), whose result is compared with the one the
# CPU computes, and whose output is compared with an uninterrupted run's.

setup_file() {
	load spank
	spank_setup_file
}

setup() {
	load spank
	[ -x "$WL" ] || skip "kfd-workload is not built (make kfd-tests)"
	[ "$KFDCR_NODES" -ge 3 ] || skip "needs 3 nodes"
	[ "$KFDCR_GPUS_PER_NODE" -ge 1 ] || skip "needs GPUs"
	T=t$BATS_TEST_NUMBER
	rm -rf "${HOME_A:?}/$T" "${HOME_B:?}/$T"
	as_alice mkdir -p "$HOME_A/$T"
	as_bob mkdir -p "$HOME_B/$T"
}

teardown() {
	spank_teardown
}

# kfd-workload arguments long enough to preempt it in the middle; LONG for
# jobs that see several checkpoints and requeues (the checkpoints freeze
# them for seconds each in this emulated VM).
ARGS="--gpus 1 --iterations 2000 --seed 7 --progress 100"
LONG="--gpus 1 --vram-mb 3 --iterations 10000 --seed 7 --progress 300"

@test "spank: bad option values are refused at submission, naming the option" {
	run ! as_alice sbatch --checkpoint-keep=0 --wrap true
	grep -q -- "--checkpoint-keep: '0' is not a number from 1 to" <<<"$output"
	run ! as_alice sbatch --checkpoint=1s --wrap true
	grep -q -- "--checkpoint: interval '1s' is shorter than this site's minimum" <<<"$output"
	run ! as_alice sbatch --checkpoint=often --wrap true
	grep -q -- "--checkpoint: 'often' is not an interval" <<<"$output"
	run ! as_alice sbatch --checkpoint --checkpoint-dir=/srv/pfs/../etc --wrap true
	grep -q -- "--checkpoint-dir: '/srv/pfs/../etc'" <<<"$output"
	run ! as_alice sbatch --checkpoint --checkpoint-dir=/etc --wrap true
	grep -q -- "--checkpoint-dir: '/etc' is not inside the folders this site allows" <<<"$output"
	run ! as_alice sbatch --checkpoint --checkpoint-signal=KILL --wrap true
	grep -q -- "--checkpoint-signal: 'KILL'" <<<"$output"
	run ! as_alice sbatch --checkpoint --checkpoint-mismatch=maybe --wrap true
	grep -q -- "--checkpoint-mismatch: 'maybe'" <<<"$output"
	run ! as_alice salloc --checkpoint true
	grep -q "salloc allocation cannot be requeued" <<<"$output"
	run ! as_alice srun --checkpoint true
	grep -q "srun steps are checkpointed as part of a batch job" <<<"$output"
	# nothing was queued
	[ -z "$(squeue -h -u alice)" ]
}

@test "spank: tasks run as PID 2 of their own namespace and end with the exact status, as without kfdcr" {
	cat >"$HOME_A/$T/job.sh" <<'EOF2'
#!/bin/bash
srun -N2 -n2 bash -c 'echo "task $SLURM_PROCID: pid $$ user $(id -un)"' | sort
srun -n1 bash -c 'exit 7'; echo "exit: $?"
srun -n1 bash -c 'kill -SEGV $$' 2>/dev/null; echo "segv: $?"
echo "script pid $$"
exit 3
EOF2
	chown alice "$HOME_A/$T/job.sh"
	with=$(submit_as alice --checkpoint -N2 -o "$HOME_A/$T/with.out" "$HOME_A/$T/job.sh")
	without=$(submit_as alice -N2 -o "$HOME_A/$T/without.out" "$HOME_A/$T/job.sh")
	wait_job "$with" "FAILED|COMPLETED" 120
	wait_job "$without" "FAILED|COMPLETED" 120
	cat "$HOME_A/$T/with.out"
	grep -q '^task 0: pid 2 user alice$' "$HOME_A/$T/with.out"
	grep -q '^task 1: pid 2 user alice$' "$HOME_A/$T/with.out"
	grep -q '^script pid 2$' "$HOME_A/$T/with.out"
	# the same statuses as without kfdcr: srun's and the job's
	diff <(grep -E '^(exit|segv):' "$HOME_A/$T/without.out") <(grep -E '^(exit|segv):' "$HOME_A/$T/with.out")
	grep -q '^exit: 7$' "$HOME_A/$T/with.out"
	[ "$(job_field "$with" ExitCode)" = "$(job_field "$without" ExitCode)" ]
	[ "$(job_field "$with" ExitCode)" = 3:0 ]
	# the helper of the killed task died by the same signal
	grep -q 'exit with wait status 0xb$' "$KFDCR_LOGS"/kfdcr/helper."$with".2.0.log
}

@test "spank: a GPU batch job preempted by a high job is checkpointed within GraceTime, requeued and restored on another node with other gpu_ids, with the uninterrupted output" {
	want=$("$WL" --cpu $ARGS | tail -n 1)
	job=$(submit_as alice --checkpoint -p low --gres=gpu:1 -o "$HOME_A/$T/job.out" --wrap "$WL $ARGS")
	wait_file 120 "$HOME_A/$T/job.out" 'iteration 200/'
	first=$(job_nodes "$job")
	ids1=$(sed -n 's/.*ready: .*GPUs (\(.*\)),.*/\1/p' "$HOME_A/$T/job.out")
	high=$(preempt_node "$first")

	wait_restarts "$job" 1 180
	second=$(job_nodes "$job")
	echo "ran on $first (GPU $ids1), then on $second"
	[ "$second" != "$first" ]
	# one committed checkpoint, coordinated (the preemption's signal), within GraceTime
	ckpt_log "$job"
	[ "$(ckpt_log "$job" | grep -c '"ok":true')" -eq 1 ]
	ckpt_log "$job" | grep -q '"op":"vacate"'
	grace=$(scontrol -o show partition low | grep -o 'GraceTime=[0-9]*' | cut -d= -f2)
	ms=$(ckpt_log "$job" | grep -o '"duration_ms":[0-9]*' | cut -d: -f2)
	[ "$ms" -lt $((grace * 1000)) ]
	# restored (not started again) on the other node's GPU, another gpu_id
	log=$CKROOT/$job/run.1/restore.step.batch.task.0/restore.log
	wait_for 120 "grep -q 'Restore finished successfully' $log"
	grep 'local GPU' "$log"
	ids2=$(sed -n 's/.*-> local GPU \(0x[0-9a-f]*\).*/\1/p' "$log" | head -n 1)
	[ -n "$ids2" ]
	[ "$ids2" != "$ids1" ]

	# an uninterrupted run of the same job on the first node, meanwhile
	scancel "$high"
	ref=$(submit_as alice --checkpoint -p low -w "$first" --gres=gpu:1 -o "$HOME_A/$T/ref.out" --wrap "$WL $ARGS")
	wait_job "$job" COMPLETED 300
	got=$(tail -n 1 "$HOME_A/$T/job.out")
	[ "$got" = "$want" ]
	# the output is the uninterrupted run's (the task is PID 3 in its namespace in both)
	wait_job "$ref" COMPLETED 300
	diff "$HOME_A/$T/ref.out" <(job_output "$HOME_A/$T/job.out")
	[ "$(grep -c ready: "$HOME_A/$T/job.out")" -eq 1 ]
}

@test "spank: a 2-node multi-step job: finished steps are not run again, the running GPU step (one task per node) is restored on other nodes, the multi-task step after it runs; output of an uninterrupted run" {
	# long enough that neither task of the GPU step ends before the preemption
	ARGS=$LONG
	want=$("$WL" --cpu $ARGS | tail -n 1)
	cat >"$HOME_A/$T/job.sh" <<EOF2
#!/bin/bash
srun -N2 -n2 bash -c 'echo "step 0 task \$SLURM_PROCID"; echo ran >> $HOME_A/$T/step0.\$SLURM_PROCID'
srun -N2 -n2 --ntasks-per-node=1 --gres=gpu:1 -l $WL $ARGS
srun -N2 -n4 -l bash -c 'echo "step 2 task \$SLURM_PROCID of \$SLURM_NTASKS"; echo ran >> $HOME_A/$T/step2.\$SLURM_PROCID'
EOF2
	chown alice "$HOME_A/$T/job.sh"
	job=$(submit_as alice --checkpoint -N2 --ntasks-per-node=2 --gres=gpu:1 -p low -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	# both tasks of the GPU step running (one can start seconds after the other)
	wait_file 180 "$HOME_A/$T/job.out" '^0: kfd-workload: iteration 300/'
	wait_file 60 "$HOME_A/$T/job.out" '^1: kfd-workload: iteration 300/'
	first=$(job_nodes "$job" | tr '\n' ' ')
	high=$(preempt_node "$(job_nodes "$job" | head -n 1)")
	wait_restarts "$job" 1 240
	second=$(job_nodes "$job" | tr '\n' ' ')
	echo "first on $first, then on $second"
	ckpt_log "$job"
	ckpt_log "$job" | grep -q '"batch":"rerun"'
	# every GPU task restored on another node than before, onto another gpu_id
	for t in 0 1; do
		log=$CKROOT/$job/run.1/restore.step.1.task.$t/restore.log
		wait_for 120 "grep -q 'Restore finished successfully' $log"
		grep -q 'local GPU' "$log"
		old=$(sed -n 's/^node //p' "$CKROOT/$job/1/step.1/task.$t/TASK")
		new=$(sed -n "$((t + 1))p" <<<"$(echo $second | tr ' ' '\n')")
		echo "task $t: $old -> $new"
		[ "$old" != "$new" ]
	done
	wait_job "$job" COMPLETED 400
	cat "$HOME_A/$T/job.out"
	# step 0 ran once (its status was replayed), step 2 ran once, after the restore
	[ "$(cat "$HOME_A/$T/step0.0" "$HOME_A/$T/step0.1" | wc -l)" -eq 2 ]
	[ "$(cat "$HOME_A/$T"/step2.* | wc -l)" -eq 4 ]
	[ "$(grep -c '^[01]: result: ' "$HOME_A/$T/job.out")" -eq 2 ]
	grep -q "^0: $want\$" "$HOME_A/$T/job.out"
	grep -q "^1: $want\$" "$HOME_A/$T/job.out"
	# the same lines as an uninterrupted run on the first nodes (tasks interleave: sorted)
	scancel "$high"
	sed -i "s|$HOME_A/$T/step|$HOME_A/$T/ref-step|g" "$HOME_A/$T/job.sh"
	ref=$(submit_as alice --checkpoint -N2 --ntasks-per-node=2 --gres=gpu:1 -p low -w "$(echo $first | tr ' ' ,)" -o "$HOME_A/$T/ref.out" "$HOME_A/$T/job.sh")
	wait_job "$ref" COMPLETED 400
	diff <(sort "$HOME_A/$T/ref.out") <(job_output "$HOME_A/$T/job.out" | sort)
}

@test "spank: --checkpoint=INTERVAL keeps the job running with restorable checkpoints, --checkpoint-keep prunes; scontrol requeue and kfdcr requeue both restore it" {
	want=$("$WL" --cpu $ARGS | tail -n 1)
	ARGS=$LONG
	want=$("$WL" --cpu $ARGS | tail -n 1)
	job=$(submit_as alice --checkpoint=10s --checkpoint-keep=2 -p low --gres=gpu:1 \
		-o "$HOME_A/$T/job.out" --wrap "$WL $ARGS")
	wait_for 300 "[ \$(grep -c '\"ok\":true' $CKROOT/$job/LOG 2>/dev/null) -ge 3 ]"
	ckpt_log "$job"
	[ "$(job_state "$job")" = RUNNING ]
	[ "$(job_field "$job" Restarts)" -eq 0 ]
	! grep -q '"ok":false' "$CKROOT/$job/LOG" || false
	ckpt_log "$job" | grep -q '"op":"continue"'
	# two kept; the latest verifies and is readable by alice
	[ "$(ls "$CKROOT/$job" | grep -c '^[0-9]*$')" -eq 2 ]
	run -0 as_alice kfdcr verify "$job"
	echo "$output"
	grep -q "checkpoint $(latest "$job") of job $job: OK" <<<"$output"
	run -0 as_alice kfdcr status --json "$job"
	jq -e ".job == $job and (.checkpoints | length) == 2 and .latest > 2 and .checkpoints[0].bytes > 0" <<<"$output"
	n=$(grep -c iteration "$HOME_A/$T/job.out")
	wait_for 60 "[ \$(grep -c iteration $HOME_A/$T/job.out) -gt $n ]"

	# plain scontrol requeue: each node saves its tasks within KillWait
	as_alice scontrol requeue "$job"
	wait_restarts "$job" 1 240
	grep -q '"op":"vacate-node"' "$CKROOT/$job/LOG"
	run_start "$job" 1 60 | grep -q "\"restored_from\":$(latest "$job")"
	wait_file 120 "$HOME_A/$T/job.out" 'iteration'

	# kfdcr requeue: checkpoint now, then requeue
	run -0 as_alice kfdcr requeue "$job"
	echo "$output"
	grep -q "job $job: checkpoint [0-9]*: 1 tasks, .*; requeued" <<<"$output"
	wait_restarts "$job" 2 240
	wait_job "$job" COMPLETED 400
	[ "$(tail -n 1 "$HOME_A/$T/job.out")" = "$want" ]
	[ "$(grep -c ready: "$HOME_A/$T/job.out")" -eq 1 ]
}

@test "spank: a checkpoint failing on one node leaves the previous one valid, and the job restores from it" {
	ARGS=$LONG
	want=$("$WL" --cpu $ARGS | tail -n 1)
	conf=/etc/slurm/plugstack.conf
	cp "$conf" "$BATS_TEST_TMPDIR/plugstack.conf"
	sed -i "s|\$| criu=$KFDCR_SRCDIR/tests/system/fault-criu|" "$conf"
	rm -f /run/kfdcr-fault
	job=$(submit_as alice --checkpoint -N2 --gres=gpu:1 -p low -o "$HOME_A/$T/job.out" \
		--wrap "srun -N2 -n2 --ntasks-per-node=1 --gres=gpu:1 -l $WL $ARGS")
	wait_file 180 "$HOME_A/$T/job.out" '0: kfd-workload: iteration 300/'
	wait_file 60 "$HOME_A/$T/job.out" '1: kfd-workload: iteration 300/'
	run -0 as_alice kfdcr checkpoint "$job"
	good=$(latest "$job")
	[ "$good" = 1 ]
	# the job's second node fails its part of the next checkpoint
	job_nodes "$job" | tail -n 1 >/run/kfdcr-fault
	run -1 as_alice kfdcr checkpoint "$job"
	echo "$output"
	grep -q "checkpoint failed: .*fault injected" <<<"$output"
	grep -q "checkpoint of job $job failed: .*fault injected.*previous checkpoint stays valid" "$HOME_A/$T/job.out"
	# nothing of it left; the previous checkpoint untouched and valid
	[ "$(latest "$job")" = "$good" ]
	! ls -a "$CKROOT/$job" | grep -q '^\.tmp\.' || false
	run -0 kfdcr verify "$job" "$good"
	[ "$(job_state "$job")" = RUNNING ]

	# requeue it: the checkpoint fails again, the job comes back from the good one
	run -1 as_alice kfdcr requeue "$job"
	echo "$output"
	wait_restarts "$job" 1 240
	run_start "$job" 1 60 | grep -q "\"restored_from\":$good"
	rm -f /run/kfdcr-fault
	cp "$BATS_TEST_TMPDIR/plugstack.conf" "$conf"
	wait_job "$job" COMPLETED 400
	grep -q "^0: $want\$" "$HOME_A/$T/job.out"
	grep -q "^1: $want\$" "$HOME_A/$T/job.out"
}

@test "spank: a truncated or damaged file in a committed checkpoint is caught before any task is restored" {
	want=$("$WL" --cpu $ARGS | tail -n 1)
	job=$(submit_as alice --checkpoint --checkpoint-keep=2 -p low --gres=gpu:1 \
		-o "$HOME_A/$T/job.out" --wrap "$WL $ARGS")
	wait_file 120 "$HOME_A/$T/job.out" 'iteration 100/'
	run -0 as_alice kfdcr checkpoint "$job"
	wait_file 120 "$HOME_A/$T/job.out" 'iteration 300/'
	run -0 as_alice kfdcr requeue "$job"
	scontrol hold "$job"
	[ "$(latest "$job")" = 2 ]
	# truncate the biggest file of checkpoint 2
	f=$(cd "$CKROOT/$job/2" && find . -type f -printf '%s %P\n' | sort -n | tail -n 1 | cut -d' ' -f2)
	truncate -s -4096 "$CKROOT/$job/2/$f"
	scontrol release "$job"
	wait_restarts "$job" 1 240
	run_start "$job" 1 60 | grep -q '"restored_from":1'
	grep -q "checkpoint 2 of job $job cannot be used: $f: .* (truncated)" "$HOME_A/$T/job.out"
	wait_job "$job" COMPLETED 400
	[ "$(tail -n 1 "$HOME_A/$T/job.out")" = "$want" ]

	# the same with one flipped byte, and nothing older to fall back on
	job=$(submit_as alice --checkpoint --checkpoint-keep=1 -p low --gres=gpu:1 \
		-o "$HOME_A/$T/job2.out" --wrap "$WL $ARGS")
	wait_file 120 "$HOME_A/$T/job2.out" 'iteration 100/'
	run -0 as_alice kfdcr requeue "$job"
	scontrol hold "$job"
	f=$(cd "$CKROOT/$job/1" && find . -type f -name 'pages-*.img' -printf '%s %P\n' | sort -n | tail -n 1 | cut -d' ' -f2)
	printf 'X' | dd of="$CKROOT/$job/1/$f" bs=1 seek=100 conv=notrunc status=none
	n=$(grep -c iteration "$HOME_A/$T/job2.out")
	scontrol release "$job"
	wait_job "$job" FAILED 240
	cat "$HOME_A/$T/job2.out"
	grep -q "checkpoint 1 of job $job cannot be used: $f: CRC-32C .* (the file is damaged)" "$HOME_A/$T/job2.out"
	grep -q "none is usable" "$HOME_A/$T/job2.out"
	# nothing was restored or started again
	[ ! -e "$CKROOT/$job/run.1/restore.step.batch.task.0" ]
	[ "$(grep -c iteration "$HOME_A/$T/job2.out")" -eq "$n" ]
	[ "$(grep -c ready: "$HOME_A/$T/job2.out")" -eq 1 ]
}

@test "spank: two users: neither can read, alter, trigger a dump of or restore the other's job" {
	job=$(submit_as alice --checkpoint -p low -o "$HOME_A/$T/job.out" \
		--wrap 'i=0; while :; do i=$((i + 1)); echo $i; sleep 0.2; done')
	wait_file 60 "$HOME_A/$T/job.out" '^5$'
	run -0 as_alice kfdcr checkpoint "$job"
	[ "$(latest "$job")" = 1 ]
	# read
	run ! as_bob ls "$CKROOT/$job"
	grep -q "Permission denied" <<<"$output"
	run ! as_bob cat "$CKROOT/$job/1/MANIFEST"
	run ! as_bob kfdcr status "$job"
	run ! as_bob kfdcr verify "$job"
	# alter
	run ! as_bob touch "$CKROOT/$job/x"
	run ! as_bob rm -rf "$CKROOT/$job"
	# trigger: through Slurm, to the helper, to the task, to its socket
	run ! as_bob kfdcr checkpoint "$job"
	run ! as_bob scancel --batch --signal=USR1 "$job"
	grep -qi "denied" <<<"$output"
	helper=$(pgrep -f "kfdcr-helper --job=$job --step=batch")
	[ "$(stat -c %U /proc/$helper)" = root ]
	run ! as_bob kill -USR1 "$helper"
	task=$(pgrep -u alice | head -n 1)
	run ! as_bob kill -USR1 "$task"
	sock=/run/kfdcr/$job.batch.0.sock
	run ! as_bob /usr/bin/python3 -c "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect('$sock')"
	grep -q PermissionError <<<"$output"
	# even root, from a process that is not the task's init, is refused
	# (the helper may close the connection before the send: EPIPE is fine)
	/usr/bin/python3 -c "
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect('$sock')
try:
    s.send(b'EXIT 0')
except (BrokenPipeError, ConnectionResetError):
    pass
"
	wait_for 10 "grep -q 'refused a connection from pid' $KFDCR_LOGS/kfdcr/helper.$job.batch.log"
	[ "$(latest "$job")" = 1 ]
	[ "$(job_state "$job")" = RUNNING ]

	# restore: bob's job cannot use a folder he made, a symlink to alice's,
	# nor (put there by root) alice's checkpoint
	for kind in own-folder symlink foreign; do
		b=$(submit_as bob --hold --checkpoint --checkpoint-dir="$HOME_B/$T/$kind" -p low \
			-o "$HOME_B/$T/$kind.out" --wrap 'echo ran')
		as_bob mkdir -p "$HOME_B/$T/$kind"
		case $kind in
		own-folder) as_bob mkdir "$HOME_B/$T/$kind/$b" ;;
		symlink) as_bob ln -s "$CKROOT/$job" "$HOME_B/$T/$kind/$b" ;;
		foreign)
			b2=$(submit_as bob --hold --checkpoint -p low -o "$HOME_B/$T/$kind.out" --wrap 'echo ran')
			scancel "$b"
			b=$b2
			mkdir -m 0700 "$CKROOT/$b"
			cp -a "$CKROOT/$job/1" "$CKROOT/$job/JOB" "$CKROOT/$b/"
			sed -i "s/^job .*/job $b/; s/^uid .*/uid $(id -u bob)/" "$CKROOT/$b/JOB"
			echo 1 >"$CKROOT/$b/LATEST"
			;;
		esac
		scontrol release "$b"
		wait_job "$b" "FAILED|COMPLETED" 120
		cat "$HOME_B/$T/$kind.out"
		! grep -q '^ran$' "$HOME_B/$T/$kind.out" || false
		case $kind in
		own-folder) grep -q "job folder $b is not owned by root .*: refused" "$HOME_B/$T/$kind.out" ;;
		symlink) grep -q "job folder $b is a symlink or not a folder: refused" "$HOME_B/$T/$kind.out" ;;
		foreign) grep -q "$CKROOT/$b holds an earlier job $b's checkpoints (job ids wrap) and this is the job's first run: refused" "$HOME_B/$T/$kind.out" ;;
		esac
	done
	# alice's job and checkpoint are untouched
	[ "$(job_state "$job")" = RUNNING ]
	run -0 as_alice kfdcr verify "$job"
}

@test "spank: a batch script with a zombie, forking and reaping a process all the time, is checkpointed each time it is asked, and counts on after a requeue" {
	# a child that exited and is never reaped (a zombie: no memory, and
	# /proc gives its entries to root), and a loop that starts /bin/true and
	# waits for it, so that a checkpoint often catches one between the two
	cat >"$HOME_A/$T/zombie.py" <<'EOF2'
import os, time
if os.fork() == 0:
    os._exit(3)
time.sleep(100000)
EOF2
	cat >"$HOME_A/$T/job.sh" <<EOF2
#!/bin/bash
/usr/bin/python3 $HOME_A/$T/zombie.py &
i=0
while :; do
	i=\$((i + 1))
	/bin/true
	[ \$((i % 50)) -ne 0 ] || echo \$i
done
EOF2
	chown alice "$HOME_A/$T/zombie.py" "$HOME_A/$T/job.sh"
	job=$(submit_as alice --checkpoint -p low -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	zombie="p=\$(pgrep -u alice -f zombie.py) && ps -o stat= --ppid \"\$p\" | grep -q '^Z'"
	wait_file 60 "$HOME_A/$T/job.out" '^250$'
	wait_for 60 "$zombie"
	for k in 1 2 3 4 5 6; do
		run -0 as_alice kfdcr checkpoint "$job"
		[ "$(latest "$job")" = "$k" ]
	done
	run -0 as_alice kfdcr requeue "$job"
	[ "$(latest "$job")" = 7 ]
	wait_restarts "$job" 1 240
	run_start "$job" 1 60 | grep -q '"restored_from":7'
	n=$(grep -c '^[0-9]*$' "$HOME_A/$T/job.out")
	wait_for 60 "[ \$(grep -c '^[0-9]*\$' $HOME_A/$T/job.out) -ge $((n + 5)) ]"
	# the zombie came back with its parent
	bash -c "$zombie"
	scancel "$job"
	# one count from 50 on, in steps of 50: not started again, nothing lost
	grep '^[0-9]*$' "$HOME_A/$T/job.out" | awk '$1 != NR * 50 { print "line " NR ": " $1; bad = 1 } END { exit bad }'
	[ "$(grep -c '"ok":false' "$CKROOT/$job/LOG")" -eq 0 ]
}

@test "spank: a restore opens the task's files as its user (a file swapped for a symlink to a root-only file is refused); a non-dumpable process makes the checkpoint fail, the previous one stays valid" {
	# a root-only secret (the test bed's /etc/shadow is an empty stand-in
	# anyone can read), and a file alice's job keeps open with its size
	# and mode, as she could make one for /etc/shadow on a real node
	secret=$KFDCR_SHARED/secret.$$
	head -c 1234 /dev/urandom >"$secret"
	chmod 0600 "$secret"
	size=$(stat -c %s "$secret")
	mode=$(stat -c %a "$secret")
	as_alice bash -c "head -c $size /dev/zero >$HOME_A/$T/x && chmod $mode $HOME_A/$T/x"
	cat >"$HOME_A/$T/job.sh" <<EOF2
#!/bin/bash
exec 3<$HOME_A/$T/x
i=0
while :; do
	i=\$((i + 1)); echo \$i; sleep 0.2
	if [ -e $HOME_A/$T/go ] && [ ! -e $HOME_A/$T/started ]; then
		touch $HOME_A/$T/started
		/usr/bin/python3 -c 'import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); print("undumpable", flush=True); time.sleep(600)' &
	fi
done
EOF2
	chown alice "$HOME_A/$T/job.sh"
	job=$(submit_as alice --checkpoint -p low -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	wait_file 60 "$HOME_A/$T/job.out" '^5$'
	run -0 as_alice kfdcr checkpoint "$job"
	[ "$(latest "$job")" = 1 ]

	# a process that asked not to be dumped: root criu must not save its memory
	as_alice touch "$HOME_A/$T/go"
	wait_file 60 "$HOME_A/$T/job.out" '^undumpable$'
	run -1 as_alice kfdcr checkpoint "$job"
	echo "$output"
	grep -q "not dumpable" <<<"$output"
	grep -q "checkpoint of job $job failed: .*process [0-9]* (python3) of the task is not dumpable.*previous checkpoint stays valid" "$HOME_A/$T/job.out"
	[ "$(latest "$job")" = 1 ]
	! ls -a "$CKROOT/$job" | grep -q '^\.tmp\.' || false
	run -0 kfdcr verify "$job" 1
	[ "$(job_state "$job")" = RUNNING ]

	# requeue: the checkpoint fails again (the job restarts from checkpoint 1);
	# meanwhile ~/x becomes a symlink to the secret, which alice cannot open
	run as_alice kfdcr requeue "$job"
	echo "$output"
	scontrol hold "$job"
	as_alice bash -c "rm $HOME_A/$T/x && ln -s $secret $HOME_A/$T/x"
	scontrol release "$job"
	wait_job "$job" "FAILED|COMPLETED" 240
	cat "$HOME_A/$T/job.out"
	run_start "$job" 1 60 | grep -q '"restored_from":1'
	grep -q "restore of step.batch.task.0 of job $job from checkpoint 1 refused: the task had .*/$T/x open; as uid $(id -u alice) it cannot be opened now: Permission denied" "$HOME_A/$T/job.out"
	[ "$(job_state "$job")" = FAILED ]
	rm -f "$secret"
}
