# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers for the system tests (bats, inside the test bed).

bats_require_minimum_version 1.5.0

: "${KFDCR_LOGS:?system tests run inside the test bed: tests/testbed/run -- bats ...}"

# Run a command, logging it and its output to the test's output.
log_run() {
	echo "+ $*" >&2
	"$@"
}

# Wait until CMD (a string for bash -c) succeeds; fail after SECS seconds.
wait_for() {
	local secs=$1 cmd=$2 deadline=$((SECONDS + $1))
	while ! bash -c "$cmd" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out after ${secs}s waiting for: $cmd" >&2
			return 1
		fi
		sleep 0.5
	done
}

job_field() { # JOBID FIELD -> value from scontrol show job
	scontrol -o show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

job_state() { job_field "$1" JobState; }

# sbatch --parsable, printing the job id.
submit() {
	sbatch --parsable "$@" | cut -d';' -f1
}

# On failure, show what the daemons said: the last lines of every log.
show_daemon_logs() {
	local f
	echo "--- squeue ---"
	squeue -a -o '%.8i %.9P %.12j %.8T %.10M %.6D %R' 2>&1
	for f in "$KFDCR_LOGS"/slurmctld.log "$KFDCR_LOGS"/slurmd.*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $(basename "$f") ---"
		tail -n 15 "$f"
	done
}

common_teardown() {
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		show_daemon_logs
	fi
	scancel --quiet -u root 2>/dev/null || true
	wait_for 30 '[ -z "$(squeue -h -u root)" ]' || true
}
