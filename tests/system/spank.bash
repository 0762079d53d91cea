# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers for the kfdcr Slurm tests (spank*.bats): jobs as the test bed's
# ordinary users, preemption, checkpoint folders.

load common

export WL=$KFDCR_BUILDDIR/tests/kfd/kfd-workload
export CKROOT=$KFDCR_SHARED/checkpoints
export HOME_A=$KFDCR_SHARED/home/alice HOME_B=$KFDCR_SHARED/home/bob

# Run a command as alice or bob, in their home.
as_user() {
	local u=$1
	shift
	(cd "$KFDCR_SHARED/home/$u" && runuser -u "$u" -- "$@")
}
as_alice() { as_user alice "$@"; }
as_bob() { as_user bob "$@"; }

# submit_as USER SBATCH_ARGS...: the job id
submit_as() {
	local u=$1
	shift
	as_user "$u" sbatch --parsable "$@" | cut -d';' -f1
}

spank_setup_file() {
	[ -f "$KFDCR_BUILDDIR/spank/.libs/spank_kfdcr.so" ] || skip "the SPANK plugin is not built"
	# kfdsim may have been reloaded by another file: the render group again
	"$KFDCR_SRCDIR/tests/testbed/gpu-access"
	criu check >/dev/null 2>&1 || true
}

# Is JOB's state STATE (a regular expression)?
job_is() {
	[[ "$(job_state "$1")" =~ ^($2)$ ]]
}

wait_job() { # JOB STATE_RE SECS
	wait_for "$3" "[[ \"\$(scontrol -o show job $1 | grep -o 'JobState=[A-Z_]*')\" =~ ^JobState=($2)\$ ]]"
}

wait_restarts() { # JOB N SECS: Restarts >= N and running again
	wait_for "$3" "[ \"\$(scontrol -o show job $1 | grep -o 'Restarts=[0-9]*' | cut -d= -f2)\" -ge $2 ] && scontrol -o show job $1 | grep -q 'JobState=RUNNING'"
}

wait_file() { # SECS FILE PATTERN
	wait_for "$1" "grep -q -e '$3' '$2'"
}

job_nodes() { # the nodes of a running job, one per line
	scontrol show hostnames "$(scontrol -o show job "$1" | grep -o ' NodeList=[^ ]*' | cut -d= -f2)"
}

# The job's LOG lines about committed checkpoints.
ckpt_log() {
	grep '"event":"checkpoint"' "$CKROOT/$1/LOG" 2>/dev/null
}

# The LOG line of run RUN's start (after waiting up to SECS for it).
run_start() { # JOB RUN SECS
	wait_for "$3" "grep -q '\"event\":\"start\",\"run\":$2,' $CKROOT/$1/LOG" || return 1
	grep "\"event\":\"start\",\"run\":$2," "$CKROOT/$1/LOG" | tail -n 1
}

latest() {
	cat "$CKROOT/$1/LATEST" 2>/dev/null || echo 0
}

# The job's output without Slurm's own notices of the requeue: slurmstepd's
# "*** JOB/STEP ... CANCELLED ... DUE TO JOB REQUEUE ***" (for a step
# prefixed by srun -l's task label), srun's "Job step aborted" and its
# "task N: Terminated" for the first run's tasks.  They are Slurm's messages
# about the first run ending, the same without kfdcr, not the job's output.
job_output() {
	grep -v -E -e '^([0-9]+: )?slurmstepd(-[a-z0-9]+)?: error: \*\*\* (JOB|STEP) [0-9.]+ ON [a-z0-9]+ CANCELLED AT .* DUE TO (JOB REQUEUE|PREEMPTION) \*\*\*$' \
		-e '^srun: Job step aborted: Waiting up to [0-9]+ seconds for job step to finish\.$' \
		-e '^srun: error: [a-z0-9]+: tasks? [0-9,-]+: Terminated$' "$1"
}

# A high-priority job of bob's that takes NODE, for preemption.
preempt_node() { # NODE [SECS]
	submit_as bob -p high -w "$1" --exclusive -o /dev/null --wrap "sleep ${2:-600}"
}

spank_teardown() {
	# the fault-injection test's changes
	rm -f /run/kfdcr-fault
	if [ -f "$BATS_TEST_TMPDIR/plugstack.conf" ]; then
		cp "$BATS_TEST_TMPDIR/plugstack.conf" /etc/slurm/plugstack.conf
	fi
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		show_daemon_logs
		local f
		for f in "$KFDCR_LOGS"/kfdcr/helper.*.log; do
			[ -f "$f" ] || continue
			echo "--- $(basename "$f") ---"
			tail -n 8 "$f"
		done
	fi
	scancel --quiet -u alice 2>/dev/null || true
	scancel --quiet -u bob 2>/dev/null || true
	scancel --quiet -u root 2>/dev/null || true
	wait_for 90 '[ -z "$(squeue -h)" ]' || true
}
