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

# kfd-workload arguments long enough to preempt it in the middle.
ARGS="--gpus 1 --iterations 3000 --seed 7 --progress 150"

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
	wait_file 120 "$HOME_A/$T/job.out" 'iteration 300/'
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
	grep 'local GPU' "$log"
	ids2=$(sed -n 's/.*-> local GPU \(0x[0-9a-f]*\).*/\1/p' "$log" | head -n 1)
	[ -n "$ids2" ] && [ "$ids2" != "$ids1" ]

	wait_job "$job" COMPLETED 300
	got=$(tail -n 1 "$HOME_A/$T/job.out")
	[ "$got" = "$want" ]
	# the output is an uninterrupted run's: run one on the first node
	scancel "$high"
	ref=$(submit_as alice -p low -w "$first" --gres=gpu:1 -o "$HOME_A/$T/ref.out" --wrap "$WL $ARGS")
	wait_job "$ref" COMPLETED 300
	diff "$HOME_A/$T/ref.out" <(job_output "$HOME_A/$T/job.out")
	[ "$(grep -c ready: "$HOME_A/$T/job.out")" -eq 1 ]
}
