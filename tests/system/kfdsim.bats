#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# kfdsim system tests: the workload computes its known result on kfdsim
# GPUs; kfd-ckpt checkpoints it (PROCESS_INFO -> CHECKPOINT -> UNPAUSE)
# and a fresh process restores it onto other gpu_ids and finishes with the
# uninterrupted result; every negative case gets its errno.
#
# Runs in the test bed as root with kfdsim loaded (tests/testbed/run);
# the programs come from $KFDCR_BUILDDIR/tests/kfd (built by make check).
# At least two GPUs are needed.

bats_require_minimum_version 1.5.0

setup_file() {
	export KFD_BIN=${KFDCR_BUILDDIR:-$PWD}/tests/kfd
	export TOPO=/sys/devices/virtual/kfd/kfd/topology
}

setup() {
	[ -e /dev/kfd ] || skip "/dev/kfd missing: kfdsim is not loaded"
	[ -x "$KFD_BIN/kfd-workload" ] || skip "$KFD_BIN/kfd-workload not built (make check builds it)"
	[ "$(gpu_count)" -ge 2 ] || skip "kfdsim has fewer than 2 GPUs"
	PATH=$KFD_BIN:$PATH
	WL_PID=
	CHUNK_DELAY_OLD=
	KFDSIM_RELOAD=()
	KFDSIM_KO=${KFDCR_KO:-${KFDCR_SRCDIR:-$PWD}/kernel/kfdsim.ko}
}

teardown() {
	if [ -n "${WL_PID:-}" ]; then
		kill -9 "$WL_PID" 2>/dev/null || true
		wait "$WL_PID" 2>/dev/null || true
	fi
	if [ -n "${CHUNK_DELAY_OLD:-}" ]; then
		echo "$CHUNK_DELAY_OLD" >/sys/module/kfdsim/parameters/chunk_delay_us || true
	fi
	if [ ${#KFDSIM_RELOAD[@]} -gt 0 ]; then
		# a test reloaded kfdsim and failed half way: put it back as it was
		rmmod kfdsim 2>/dev/null || true
		insmod "$KFDSIM_KO" "${KFDSIM_RELOAD[@]}" || true
	fi
}

gpu_ids() { cat "$TOPO"/nodes/*/gpu_id | grep -v '^0$' | sort -n | tr '\n' ' '; }

gpu_count() {
	local n=0 f
	for f in "$TOPO"/nodes/*/gpu_id; do
		[ -e "$f" ] && [ "$(cat "$f")" != 0 ] && n=$((n + 1))
	done
	echo "$n"
}

# log a command's output for failing tests
log() { printf '# %s\n' "$@" >&3; }

# Run kfd-ckpt, show its output (bats prints it when the test fails),
# then require exit status 0.
ckpt() {
	run kfd-ckpt "$@"
	printf '$ kfd-ckpt %s\n%s\n' "$*" "$output"
	[ "$status" -eq 0 ]
}

# Run the workload in the foreground, show its output, require status 0.
workload() {
	run kfd-workload "$@"
	printf '$ kfd-workload %s\n%s\n' "$*" "$output"
	[ "$status" -eq 0 ]
}

result_of() { sed -n 's/^result: \(0x[0-9a-f]\{16\}\)$/\1/p' <<<"$1" | tail -n 1; }

cpu_result() {
	run -0 kfd-workload --cpu "$@"
	result_of "$output"
}

# Start the workload in the background, its output in $BATS_TEST_TMPDIR/wl.out.
start_workload() {
	# not the last run's output: wait_for_line could find it first
	rm -f "$BATS_TEST_TMPDIR/wl.out"
	kfd-workload "$@" >"$BATS_TEST_TMPDIR/wl.out" 2>&1 3>&- &
	WL_PID=$!
}

# Wait until the workload printed a line matching $1 (30 s at most).
wait_for_line() {
	local i
	for ((i = 0; i < 300; i++)); do
		grep -qs "$1" "$BATS_TEST_TMPDIR/wl.out" && return 0
		kill -0 "$WL_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$BATS_TEST_TMPDIR/wl.out" >&2
	return 1
}

# Wait for the workload; its exit status.  (Not under `run`: a subshell
# cannot wait for our child.)
wait_workload() {
	local rc=0
	wait "$WL_PID" || rc=$?
	WL_PID=
	return $rc
}

# The workload was killed by kfd-ckpt dump --kill.
reap_killed() {
	local rc=0
	wait "$WL_PID" || rc=$?
	WL_PID=
	[ "$rc" = 137 ]
}

@test "kfdsim workload: 2 GPUs compute the CPU result" {
	local want
	want=$(cpu_result --gpus 2 --iterations 8 --seed 7)
	workload --gpus 2 --iterations 8 --seed 7
	[[ $output == *"ready: pid"* ]]
	[[ $output == *"iteration 8/8 done"* ]]
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim workload: every GPU at once (barriers on more than 5 signals)" {
	local want n
	n=$(gpu_count)
	[ "$n" -le 8 ] || n=8
	want=$(cpu_result --gpus "$n" --iterations 6 --seed 21 --vram-mb 1)
	workload --gpus "$n" --iterations 6 --seed 21 --vram-mb 1
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim workload: 1 GPU with GTT rings and another seed" {
	local want
	want=$(cpu_result --gpus 1 --iterations 5 --seed 99 --vram-mb 1)
	workload --gpus 1 --iterations 5 --seed 99 --vram-mb 1 --ring-mem gtt
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim workload: bad options are rejected" {
	run -2 kfd-workload --gpus 0
	[[ $output == *"--gpus: invalid value"* ]]
	run -1 kfd-workload --gpus 2 --gtt-mb 1 --vram-mb 64
	[[ $output == *"--gtt-mb"* ]]
}

@test "kfdsim checkpoint: dump + kill, restore onto other gpu_ids gives the uninterrupted result" {
	local want img=$BATS_TEST_TMPDIR/img
	want=$(cpu_result --gpus 2 --iterations 200 --seed 3)
	start_workload --gpus 2 --iterations 200 --seed 3
	wait_for_line "iteration 5/200 done"
	ckpt dump "$WL_PID" "$img" --kill
	[[ $output == *"dumped pid $WL_PID"* ]]
	reap_killed
	ckpt restore "$img" --gpus rotate
	[[ $output == *"restored: pid"* ]]
	[[ $output == *"resumed restored pid"* ]]
	[ "$(result_of "$output")" = "$want" ]
	# kfdsim moved every mapping: DRM offsets are never reused, doorbell
	# offsets name the new (actual) gpu_ids; the restore used the new ones
	[[ $output =~ "BO offsets: "[1-9][0-9]*" moved, 0 kept" ]]
	# every device landed on another gpu_id
	maps=$(grep -o '0x[0-9a-f]*->0x[0-9a-f]*' <<<"$output")
	[ -n "$maps" ]
	while read -r map; do [ "${map%->*}" != "${map#*->}" ]; done <<<"$maps"
}

@test "kfdsim restore: skipping the zero pages of VRAM BOs leaves poison behind, and the workload sees it" {
	local img=$BATS_TEST_TMPDIR/img
	[ "$(cat /sys/module/kfdsim/parameters/vram_poison)" != 0 ] || skip "vram_poison=0"
	start_workload --gpus 2 --iterations 150 --seed 14
	wait_for_line "iteration 5/150 done"
	ckpt dump "$WL_PID" "$img" --kill
	reap_killed
	run kfd-ckpt restore "$img" --gpus rotate --skip-zero-pages
	echo "$output"
	[ "$status" = 1 ]
	[[ $output == *"that was cleared at the start are not zero (first 0x$(printf '%08x' "$(cat /sys/module/kfdsim/parameters/vram_poison)"))"* ]]
	# the same image restored with every byte written back is fine
	ckpt restore "$img" --gpus rotate
	[[ $output == *"KiB of zero VRAM per GPU still zero"* ]]
}

@test "kfdsim checkpoint: after UNPAUSE the original and a restored copy both finish with the result" {
	local want img=$BATS_TEST_TMPDIR/img
	want=$(cpu_result --gpus 2 --iterations 150 --seed 11)
	start_workload --gpus 2 --iterations 150 --seed 11
	wait_for_line "iteration 5/150 done"
	ckpt dump "$WL_PID" "$img"
	wait_workload
	out=$(cat "$BATS_TEST_TMPDIR/wl.out")
	echo "$out"
	[ "$(result_of "$out")" = "$want" ]
	# the copy goes back onto the same GPUs (identity mapping)
	ckpt restore "$img"
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim checkpoint: a process with two /dev/kfd fds is checkpointed once and restored" {
	local want img=$BATS_TEST_TMPDIR/img
	want=$(cpu_result --gpus 2 --iterations 150 --seed 12)
	start_workload --gpus 2 --iterations 150 --seed 12 --kfd-fds 1
	wait_for_line "iteration 5/150 done"
	ckpt dump "$WL_PID" "$img" --kill
	[[ $output == *"2 /dev/kfd fds, one KFD process: checkpointed once"* ]]
	reap_killed
	ckpt restore "$img" --gpus rotate
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim checkpoint: a thread holding another /dev/kfd fd; original and restored copy both finish" {
	local want img=$BATS_TEST_TMPDIR/img out
	want=$(cpu_result --gpus 2 --iterations 150 --seed 13)
	start_workload --gpus 2 --iterations 150 --seed 13 --kfd-thread
	wait_for_line "iteration 5/150 done"
	ckpt dump "$WL_PID" "$img"
	[[ $output == *"2 /dev/kfd fds, one KFD process: checkpointed once"* ]]
	wait_workload
	out=$(cat "$BATS_TEST_TMPDIR/wl.out")
	echo "$out"
	[ "$(result_of "$out")" = "$want" ]
	ckpt restore "$img" --gpus rotate
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim checkpoint: PROCESS_INFO through two fds evicts twice; the second UNPAUSE fails and the queues stay stopped" {
	local before after
	start_workload --gpus 2 --iterations 2000 --seed 1 --kfd-fds 1
	wait_for_line "iteration 3/2000 done"
	ckpt try double-info "$WL_PID"
	[[ $output == *"PROCESS_INFO on its second kfd fd: ok"* ]]
	[[ $output == *"UNPAUSE on the first fd: ok"* ]]
	[[ $output == *"UNPAUSE on the second fd: EINVAL"* ]]
	# amdkfd's count is still 1: no iteration completes any more
	sleep 1
	before=$(grep -c 'done$' "$BATS_TEST_TMPDIR/wl.out")
	sleep 3
	after=$(grep -c 'done$' "$BATS_TEST_TMPDIR/wl.out")
	echo "iterations reported: $before, 3 s later $after"
	[ "$before" = "$after" ]
	kill -0 "$WL_PID"
}

@test "kfdsim checkpoint: stops at random moments, mid-dispatch included, restore exactly" {
	local want img round delay inflight=0
	want=$(cpu_result --gpus 2 --iterations 40 --seed 5 --vram-mb 6)
	# slow the device down so that most stops land inside a dispatch
	if [ -w /sys/module/kfdsim/parameters/chunk_delay_us ]; then
		CHUNK_DELAY_OLD=$(cat /sys/module/kfdsim/parameters/chunk_delay_us)
		echo 200 >/sys/module/kfdsim/parameters/chunk_delay_us
	fi
	for round in 1 2 3; do
		img=$BATS_TEST_TMPDIR/img$round
		start_workload --gpus 2 --iterations 40 --seed 5 --vram-mb 6
		wait_for_line "ready: pid"
		delay=$(printf '0.%03d' $((RANDOM % 1000)))
		sleep "$delay"
		ckpt dump "$WL_PID" "$img" --kill
		reap_killed
		ckpt restore "$img" --gpus rotate
		[ "$(result_of "$output")" = "$want" ]
		# packets were in flight when it stopped (rptr < wptr on a queue)
		if grep -Eo 'rptr [0-9]+ wptr [0-9]+' <<<"$output" |
			awk '$2 < $4 { f = 1 } END { exit !f }'; then
			inflight=$((inflight + 1))
		fi
	done
	echo "rounds with packets in flight: $inflight"
	[ "$inflight" -ge 1 ]
}

@test "kfdsim checkpoint: a restored process is checkpointed and restored again" {
	local want img1=$BATS_TEST_TMPDIR/img1 img2=$BATS_TEST_TMPDIR/img2 pid2
	want=$(cpu_result --gpus 2 --iterations 200 --seed 8)
	start_workload --gpus 2 --iterations 200 --seed 8 --ring-mem gtt
	wait_for_line "iteration 5/200 done"
	ckpt dump "$WL_PID" "$img1" --kill
	reap_killed
	# the restored copy runs in the background under kfd-ckpt restore
	kfd-ckpt restore "$img1" --gpus rotate >"$BATS_TEST_TMPDIR/wl.out" 2>&1 3>&- &
	WL_PID=$!
	wait_for_line "restored: pid"
	pid2=$(sed -n 's/.*restored: pid \([0-9]*\),.*/\1/p' "$BATS_TEST_TMPDIR/wl.out")
	sleep 0.5
	ckpt dump "$pid2" "$img2" --kill
	reap_killed
	ckpt restore "$img2" --gpus rotate
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim permissions: non-owner ioctls fail with EBADF" {
	start_workload --gpus 2 --iterations 2000 --seed 1 --progress 0
	wait_for_line "ready: pid"
	ckpt try nonowner "$WL_PID"
	[[ $output == *"GET_VERSION on another process's kfd fd: EBADF"* ]]
	[[ $output == *"PROCESS_INFO on another process's kfd fd, not its tracer: EBADF"* ]]
	ckpt try tracer-other-ioctl "$WL_PID"
	[[ $output == *"GET_VERSION on the tracee's kfd fd as its tracer: EBADF"* ]]
	ckpt try fork-child
	[[ $output == *"forked child: EBADF"* ]]
}

@test "kfdsim permissions: CRIU_OP without CAP_CHECKPOINT_RESTORE fails with EACCES" {
	start_workload --gpus 2 --iterations 2000 --seed 1 --progress 0
	wait_for_line "ready: pid"
	ckpt try nocap "$WL_PID"
	[[ $output == *"without CAP_CHECKPOINT_RESTORE: EACCES"* ]]
}

@test "kfdsim checkpoint: CHECKPOINT or UNPAUSE without PROCESS_INFO fail with EINVAL" {
	start_workload --gpus 2 --iterations 2000 --seed 1 --progress 0
	wait_for_line "ready: pid"
	ckpt try ckpt-no-info "$WL_PID"
	[[ $output == *"CHECKPOINT without PROCESS_INFO: EINVAL"* ]]
	ckpt try unpause-no-info "$WL_PID"
	[[ $output == *"UNPAUSE without PROCESS_INFO: EINVAL"* ]]
}

@test "kfdsim checkpoint: malformed CHECKPOINTs are rejected and change nothing" {
	local want
	want=$(cpu_result --gpus 2 --iterations 200 --seed 4)
	start_workload --gpus 2 --iterations 200 --seed 4
	wait_for_line "iteration 1/200 done"
	local c
	for c in ckpt-num-bos:EINVAL ckpt-num-devices:EINVAL ckpt-num-objects:EINVAL \
		ckpt-priv-size:EINVAL ckpt-bad-pointer:EFAULT; do
		ckpt try "${c%:*}" "$WL_PID"
		[[ $output == *"CHECKPOINT with "*": ${c#*:}"* ]]
		[[ $output == *"UNPAUSE after the failure: ok"* ]]
	done
	wait_workload
	out=$(cat "$BATS_TEST_TMPDIR/wl.out")
	echo "$out"
	[ "$(result_of "$out")" = "$want" ]
}

@test "kfdsim restore: malformed RESTOREs are rejected and change nothing" {
	local img=$BATS_TEST_TMPDIR/img c
	start_workload --gpus 2 --iterations 1000 --seed 2
	wait_for_line "iteration 1/1000 done"
	ckpt dump "$WL_PID" "$img" --kill
	reap_killed
	for c in restore-unknown-gpu:EINVAL restore-duplicate-gpu:EINVAL restore-wrong-drm-fd:EINVAL \
		restore-kfd-as-drm-fd:EINVAL restore-zero-user-gpu:EINVAL restore-bo-gpu:EINVAL \
		restore-num-bos:EINVAL restore-num-devices:EINVAL restore-num-objects:EINVAL \
		restore-truncated:EINVAL restore-corrupt:EINVAL restore-bad-pointer:EFAULT \
		restore-sysmem-limit:ENOMEM restore-vram-short:ENOMEM restore-vram-race:ENOMEM; do
		ckpt try "${c%:*}" "$img" --gpus rotate
		[[ $output == *"RESTORE "*": ${c#*:}"* ]]
		[[ $output == *"RESTORE of the unmodified image in the same process: ok"* ]]
		[[ $output == *"mapping and filling the restored BOs: ok"* ]]
		[[ $output == *"a second CRIU_OP RESTORE into the restored process: EINVAL"* ]]
		[[ $output == *"CRIU_OP RESUME of the restored process: ok"* ]]
		[[ $output == *"a second CRIU_OP RESUME: EINVAL"* ]]
		# doorbell offsets name the actual GPU, not the image's user id
		[[ $output =~ "names gpu 0x"([0-9a-f]+)" (user 0x"([0-9a-f]+)", actual 0x"([0-9a-f]+)")" ]]
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[3]}" ]
		[ "${BASH_REMATCH[2]}" != "${BASH_REMATCH[3]}" ]
		case ${c%:*} in
		restore-vram-short)
			# it charged nothing: kfd-ckpt compared the free VRAM of every GPU
			[[ $output == *"free VRAM of gpu 0x"*" before, "*" after"* ]]
			;;
		restore-vram-race)
			# VRAM for one of two racing RESTOREs: one gets it, one ENOMEM
			[ "$(grep -c 'RESTORE in racing process [12]: ok' <<<"$output")" = 1 ]
			[ "$(grep -c 'RESTORE in racing process [12]: ENOMEM' <<<"$output")" = 1 ]
			[[ $output == *"free VRAM with the winner restored: "* ]]
			;;
		esac
	done
}

@test "kfdsim checkpoint: CHECKPOINT racing DESTROY_EVENT gets EINVAL or a consistent blob" {
	ckpt try ckpt-event-race
	[[ $output =~ "CHECKPOINT during DESTROY_EVENT: "([0-9]+)" consistent, "([0-9]+)" EINVAL" ]]
	# both outcomes happened, and nothing else in 2000 rounds
	[ "${BASH_REMATCH[1]}" -gt 0 ]
	[ "${BASH_REMATCH[2]}" -gt 0 ]
	[ $((BASH_REMATCH[1] + BASH_REMATCH[2])) = 2000 ]
}

@test "kfdsim restore: RESUME of a process that was not restored fails with EINVAL" {
	start_workload --gpus 2 --iterations 2000 --seed 1 --progress 0
	wait_for_line "ready: pid"
	run -1 kfd-ckpt resume "$WL_PID"
	echo "$output"
	[[ $output == *"RESUME pid $WL_PID"*"(EINVAL)"* ]]
}

@test "kfdsim restore: RESUME of a process without KFD state fails with ESRCH" {
	sleep 30 3>&- &
	WL_PID=$!
	run -1 kfd-ckpt resume "$WL_PID"
	echo "$output"
	[[ $output == *"RESUME pid $WL_PID"*"(ESRCH)"* ]]
}

@test "kfdsim restore: onto another node's gpu_ids (kfdsim reloaded with another id_seed)" {
	local want img=$BATS_TEST_TMPDIR/img p params=() old_ids new_ids seed
	[ -f "$KFDSIM_KO" ] || skip "no $KFDSIM_KO to reload"
	[ "$(awk '$1 == "kfdsim" { print $3 }' /proc/modules)" = 0 ] || skip "kfdsim is in use"
	for p in /sys/module/kfdsim/parameters/*; do
		params+=("$(basename "$p")=$(cat "$p")")
	done
	seed=$(cat /sys/module/kfdsim/parameters/id_seed)
	want=$(cpu_result --gpus 2 --iterations 200 --seed 6)
	start_workload --gpus 2 --iterations 200 --seed 6
	wait_for_line "iteration 5/200 done"
	ckpt dump "$WL_PID" "$img" --kill
	reap_killed
	old_ids=$(gpu_ids)

	# the "other node": same GPUs, other gpu_ids
	KFDSIM_RELOAD=("${params[@]}")
	rmmod kfdsim
	insmod "$KFDSIM_KO" "${params[@]/#id_seed=*/id_seed=$((seed + 1000))}"
	new_ids=$(gpu_ids)
	echo "gpu_ids before: $old_ids after: $new_ids"
	[ "$old_ids" != "$new_ids" ]
	ckpt restore "$img" --gpus topology
	[ "$(result_of "$output")" = "$want" ]

	rmmod kfdsim
	insmod "$KFDSIM_KO" "${params[@]}"
	KFDSIM_RELOAD=()
	[ "$(gpu_ids)" = "$old_ids" ]
}

@test "kfdsim: no process, BO or module reference left behind" {
	local refs others=()
	sleep 1
	run ! pgrep -x kfd-workload
	run ! pgrep -x kfd-ckpt
	# open fds and mappings of /dev/kfd and the render nodes pin the module
	# (one grep and one find: forks are slow under TCG)
	mapfile -t others < <(
		grep -lE '/dev/kfd|/dev/dri/renderD' /proc/[0-9]*/maps 2>/dev/null
		find /proc/[0-9]*/fd \( -lname /dev/kfd -o -lname '/dev/dri/renderD*' \) 2>/dev/null
	)
	refs=$(awk '$1 == "kfdsim" { print $3 }' /proc/modules)
	echo "kfdsim module references: $refs; other users: ${others[*]:-none}"
	[ ${#others[@]} -gt 0 ] && skip "other processes use kfdsim: ${others[*]}"
	[ "$refs" = 0 ]
}
