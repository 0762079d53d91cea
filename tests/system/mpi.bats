#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# MPI jobs, stage 1 (docs/mpi.md): a 4-rank Open MPI job on one node, each
# rank on its own kfdsim GPU, started with `kfdcr mpirun` in a batch job
# submitted with --checkpoint by an ordinary user, preempted with messages
# in flight, restored on another node with other gpu_ids; the workload
# (tests/mpi/kfd-mpi-workload) checks every message and ends with the
# result the CPU computes.  Direct launch through Slurm's PMI is refused.

setup_file() {
	load spank
	# a kfdcr mpirun step has private /tmp and /dev/shm: the build tree
	# (kfdcr, the workload) must not be below them
	case "$KFDCR_BUILDDIR/" in
	/tmp/* | /dev/shm/*)
		echo "mpi.bats: the build tree $KFDCR_BUILDDIR is below /tmp or /dev/shm, which a" \
			"kfdcr mpirun step's private tmpfs hide: build outside them" >&2
		return 1
		;;
	esac
	spank_setup_file
	# A 4-process checkpoint takes tens of seconds in this emulated VM:
	# give preemption the grace a site sizes from bench/ (restored below).
	export MPI_GRACE_WAS
	MPI_GRACE_WAS=$(scontrol -o show partition low | grep -o 'GraceTime=[0-9]*' | cut -d= -f2)
	scontrol update PartitionName=low GraceTime=150
}

teardown_file() {
	[ -z "${MPI_GRACE_WAS:-}" ] || scontrol update PartitionName=low GraceTime="$MPI_GRACE_WAS"
}

setup() {
	load spank
	export MW=$KFDCR_BUILDDIR/tests/mpi/kfd-mpi-workload
	[ -x "$MW" ] || skip "kfd-mpi-workload is not built (make mpi-tests; needs libopenmpi-dev)"
	[ "$KFDCR_NODES" -ge 2 ] || skip "needs 2 nodes"
	[ "$KFDCR_GPUS_PER_NODE" -ge 4 ] || skip "needs 4 GPUs per node (tests/run-all gives the suite 4)"
	T=mpi$BATS_TEST_NUMBER
	rm -rf "${HOME_A:?}/$T"
	as_alice mkdir -p "$HOME_A/$T"
}

teardown() {
	spank_teardown
}

# Four ranks, one node, a GPU each: -c2 is all of a test-bed node's CPUs.
JOB=(-p low -N1 -n1 -c2 --gres=gpu:4)
# Every iteration holds 4 stream messages of 16 KiB in flight for 50 ms.
ARGS="--iterations 120 --delay-ms 50 --progress 10 --height 64 --seed 5"

# write_job NAME COMMAND...: an executable batch script of alice's
write_job() {
	local f=$HOME_A/$T/$1
	shift
	printf '#!/bin/bash\n%s\n' "$*" >"$f"
	chown alice "$f"
	chmod 0755 "$f"
}

# rank_gpus OUTPUT: "rank gpu_id" lines from the workload's start
rank_gpus() {
	sed -n 's/^kfd-mpi-workload: rank \([0-9]*\): pid [0-9]*, GPU \(0x[0-9a-f]*\) .*/\1 \2/p' "$1" | sort -n
}

# gpu_map RESTORE_LOG: "pid checkpointed_gpu local_gpu" for every KFD process
gpu_map() {
	sed -n 's/^([ 0-9.]*) *\([0-9]*\): kfdcr_plugin: GPU \(0x[0-9a-f]*\) (user id 0x[0-9a-f]*) -> local GPU \(0x[0-9a-f]*\),.*/\1 \2 \3/p' "$1"
}

# check_gpu_map RESTORE_LOG FIRST_OUTPUT: every process maps the GPUs the
# same way, and the four ranks land on four distinct GPUs of the new node.
check_gpu_map() {
	local log=$1 out=$2 map old new pids
	map=$(gpu_map "$log")
	echo "$map"
	pids=$(awk '{ print $1 }' <<<"$map" | sort -u | wc -l)
	[ "$pids" -eq 4 ]
	# one target per checkpointed GPU, whichever process says it
	[ "$(awk '{ print $2, $3 }' <<<"$map" | sort -u | wc -l)" -eq 4 ]
	[ "$(awk '{ print $2 }' <<<"$map" | sort -u | wc -l)" -eq 4 ]
	old=$(rank_gpus "$out" | awk '{ print $2 }')
	[ "$(sort -u <<<"$old" | wc -l)" -eq 4 ]
	new=$(for g in $old; do awk -v g="$g" '$2 == g { print $3; exit }' <<<"$map"; done)
	echo "ranks' GPUs: $(echo $old) -> $(echo $new)"
	[ "$(sort -u <<<"$new" | wc -l)" -eq 4 ]
	# other gpu_ids: none of the new node's GPUs is one the job had
	for g in $new; do
		if grep -qx "$g" <<<"$old"; then
			echo "rank GPU $g after the restore is one the job had before"
			return 1
		fi
	done
}

# no_line FILE PATTERN: FILE has no line matching PATTERN
no_line() {
	[ "$(grep -c -e "$2" "$1")" -eq 0 ]
}

# finish_restored JOB HIGH FIRST_OUTPUT WANT: JOB's one task was restored
# (GPUs checked against FIRST_OUTPUT); release the ranks, end the
# preempting job HIGH, and JOB ends with WANT, every message accounted for,
# its ranks started once.
finish_restored() {
	local job=$1 high=$2 first=$3 want=$4 log
	log=$CKROOT/$job/run.1/restore.step.0.task.0/restore.log
	wait_for 300 "grep -q 'Restore finished successfully' $log"
	check_gpu_map "$log" "$first"

	as_alice touch "$HOME_A/$T/go"
	scancel "$high"
	wait_job "$job" "COMPLETED|FAILED" 900
	cat "$HOME_A/$T/job.out"
	[ "$(job_state "$job")" = COMPLETED ]
	[ "$(grep -c 'ready:' "$HOME_A/$T/job.out")" -eq 1 ]
	no_line "$HOME_A/$T/job.out" FAILED
	grep -q "messages: 480 halo and 1920 stream received, none lost, duplicated or corrupted" "$HOME_A/$T/job.out"
	[ "$(tail -n 1 "$HOME_A/$T/job.out")" = "$want" ]
}

@test "mpi: an uninterrupted 4-rank GPU job under kfdcr mpirun gives the CPU's result; the workload catches a lost, duplicated or corrupted message" {
	want=$("$MW" --reference --ranks 4 $ARGS)
	write_job job.sh "kfdcr mpirun -np 4 $MW $ARGS"
	job=$(submit_as alice --checkpoint "${JOB[@]}" -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	# meanwhile, as alice outside Slurm: each injected fault ends the run
	run ! as_alice kfdcr mpirun -np 4 "$MW" --compute cpu --iterations 6 --inject lose:3
	grep -q "rank 2: FAILED: stream message from rank 1: seq 13 arrived, expected 12: 1 message(s) LOST" <<<"$output"
	run ! as_alice kfdcr mpirun -np 4 "$MW" --compute cpu --iterations 6 --inject duplicate:3
	grep -q "rank 2: FAILED: .*seq 11 arrived again, expected 12: DUPLICATED" <<<"$output"
	run ! as_alice kfdcr mpirun -np 4 "$MW" --compute cpu --iterations 6 --inject corrupt:3
	grep -q "rank 2: FAILED: stream message from rank 1 seq 12: payload CRC .*CORRUPTED" <<<"$output"
	run -0 as_alice kfdcr mpirun -np 4 "$MW" --compute cpu $ARGS --delay-ms 0
	[ "$(tail -n 1 <<<"$output")" = "$want" ]

	wait_job "$job" "COMPLETED|FAILED" 600
	cat "$HOME_A/$T/job.out"
	[ "$(job_state "$job")" = COMPLETED ]
	# each rank on its own GPU, all four of the node's
	[ "$(rank_gpus "$HOME_A/$T/job.out" | awk '{ print $2 }' | sort -u | wc -l)" -eq 4 ]
	grep -q "none lost, duplicated or corrupted" "$HOME_A/$T/job.out"
	[ "$(tail -n 1 "$HOME_A/$T/job.out")" = "$want" ]
}

@test "mpi: a 4-rank GPU job preempted with messages in flight is restored on another node with other gpu_ids and ends with the uninterrupted result" {
	want=$("$MW" --reference --ranks 4 $ARGS)
	write_job job.sh "kfdcr mpirun -np 4 $MW $ARGS --hold-at 40:$HOME_A/$T/go"
	job=$(submit_as alice --checkpoint --checkpoint-verbose "${JOB[@]}" -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	# every rank has its stream of iteration 40 posted, not received
	wait_for 400 "[ \$(grep -c 'holding at iteration 40' $HOME_A/$T/job.out) -eq 4 ]"
	first=$(job_nodes "$job")
	cp "$HOME_A/$T/job.out" "$HOME_A/$T/first.out"
	high=$(preempt_node "$first")

	wait_restarts "$job" 1 400
	second=$(job_nodes "$job")
	echo "ran on $first, then on $second"
	[ "$second" != "$first" ]
	ckpt_log "$job"
	[ "$(ckpt_log "$job" | grep -c '"ok":true')" -eq 1 ]
	ckpt_log "$job" | grep -q '"op":"vacate"'
	# the step's one task (mpirun and its ranks) restored, with the tmpfs
	grep -q '^file step.0/task.0/node-tmpfs.tar ' "$CKROOT/$job/1/MANIFEST"
	finish_restored "$job" "$high" "$HOME_A/$T/first.out" "$want"
	grep -q "restored step.0.task.0 of job $job from checkpoint 1 on $second" "$HOME_A/$T/job.out"
	# the ranks went on from the checkpoint, holding no more
	[ "$(grep -c 'holding at iteration' "$HOME_A/$T/job.out")" -eq 4 ]
}

@test "mpi: with --checkpoint=INTERVAL, two periodic checkpoints, then a preemption: restored from the latest, with the uninterrupted result" {
	want=$("$MW" --reference --ranks 4 $ARGS)
	write_job job.sh "kfdcr mpirun -np 4 $MW $ARGS --hold-at 100:$HOME_A/$T/go"
	job=$(submit_as alice --checkpoint=10s --checkpoint-keep=3 "${JOB[@]}" -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	wait_for 900 "[ \$(grep -c '\"ok\":true' $CKROOT/$job/LOG 2>/dev/null) -ge 2 ]"
	ckpt_log "$job"
	[ "$(job_state "$job")" = RUNNING ]
	[ "$(job_field "$job" Restarts)" -eq 0 ]
	[ "$(ckpt_log "$job" | grep -c '"op":"continue"')" -ge 2 ]
	no_line "$CKROOT/$job/LOG" '"ok":false'
	run -0 as_alice kfdcr verify "$job"

	first=$(job_nodes "$job")
	high=$(preempt_node "$first")
	wait_restarts "$job" 1 400
	ckpt_log "$job"
	seq=$(ckpt_log "$job" | grep '"op":"vacate"' | grep -o '"seq":[0-9]*' | cut -d: -f2)
	[ "$seq" -ge 3 ]
	# the vacate checkpoint is the latest committed one, and the one restored
	run_start "$job" 1 60 | grep -q "\"restored_from\":$seq"
	cp "$HOME_A/$T/job.out" "$HOME_A/$T/first.out"
	finish_restored "$job" "$high" "$HOME_A/$T/first.out" "$want"
}

@test "mpi: a direct launch (srun --mpi=pmix or pmi2) in a checkpointed job is refused with a message saying what to do instead" {
	write_job job.sh "
srun --mpi=pmix -n2 $MW --compute cpu --iterations 2; echo \"pmix: \$?\"
srun --mpi=pmi2 -n2 $MW --compute cpu --iterations 2; echo \"pmi2: \$?\"
srun -n1 bash -c 'kfdcr mpirun -np 2 $MW --compute cpu --iterations 2'; echo \"inside another command: \$?\"
srun --mpi=none -n1 true; echo \"none: \$?\""
	job=$(submit_as alice --checkpoint -p low -N1 -n2 -o "$HOME_A/$T/job.out" "$HOME_A/$T/job.sh")
	wait_job "$job" "COMPLETED|FAILED" 300
	cat "$HOME_A/$T/job.out"
	for t in pmix pmi2; do
		grep -q "kfdcr: srun --mpi=$t cannot be checkpointed: Slurm starts the ranks itself and they stay connected to the PMI server in slurmstepd.*Start the MPI job with \`kfdcr mpirun -np N PROGRAM\` in the batch script instead" "$HOME_A/$T/job.out"
		grep -q "^$t: [1-9]" "$HOME_A/$T/job.out"
	done
	grep -q "kfdcr: error: mpirun: this task cannot hold a checkpointable MPI job: start it as a step of its own" "$HOME_A/$T/job.out"
	grep -q "^inside another command: [1-9]" "$HOME_A/$T/job.out"
	grep -q "^none: 0$" "$HOME_A/$T/job.out"
	# no rank ever started
	no_line "$HOME_A/$T/job.out" "kfd-mpi-workload: ready"
}
