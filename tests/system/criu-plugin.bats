#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The CRIU plugin with Debian's criu, on kfdsim: dump a running GPU
# workload, reload kfdsim with another id seed (other gpu_ids, as on
# another node), restore, and compare the final result with the CPU's.
# Also: --leave-running, failed dumps, GPU target sets, repeated
# checkpoints, and damaged images.
#
# This file reloads kfdsim with its own GPU counts and seeds; teardown_file
# puts the test bed's module back.

setup_file() {
	load common
	export PLUGIN_DIR=$KFDCR_BUILDDIR/criu-plugin/.libs
	export WL=$KFDCR_BUILDDIR/tests/kfd/kfd-workload
	export KO=$KFDCR_SRCDIR/kernel/kfdsim.ko
	export TB_GPUS=$((KFDCR_NODES * KFDCR_GPUS_PER_NODE))
	# criu probes the kernel once and caches it; do it outside the tests.
	criu check >/dev/null 2>&1 || true
}

teardown_file() {
	pkill -9 -f kfd-workload || true
	sleep 0.5
	if [ "${TB_GPUS:-0}" -gt 0 ]; then
		kfdsim_load "$TB_GPUS" "$KFDCR_SEED" || true
	fi
}

setup() {
	load common
	[ -e /dev/kfd ] || skip "kfdsim is not loaded"
	[ -f "$PLUGIN_DIR/kfdcr_plugin.so" ] || skip "kfdcr_plugin.so is not built"
	[ -x "$WL" ] || skip "kfd-workload is not built"
	WORK=$KFDCR_SHARED/criu-$BATS_TEST_NUMBER
	rm -rf "$WORK"
	mkdir -p "$WORK/img"
	WL_PID=
	LOGP=$KFDCR_LOGS/criu-$BATS_TEST_NUMBER
}

teardown() {
	[ -n "${WL_PID:-}" ] && kill -9 "$WL_PID" 2>/dev/null
	pkill -9 -f kfd-workload || true
	if mountpoint -q /run/kfdcr-devcg; then
		sleep 0.5
		rmdir /run/kfdcr-devcg/confined 2>/dev/null
		umount /run/kfdcr-devcg
	fi
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for f in "$LOGP"-*.log; do
			[ -f "$f" ] || continue
			echo "--- errors in $(basename "$f") ---"
			grep -E 'Error|kfdcr_plugin' "$f" | tail -n 20
		done
		echo "--- workload output ---"
		tail -n 5 "$WORK/wl.out" 2>/dev/null
	fi
	return 0
}

# kfdsim_load NUM_GPUS SEED: (re)load kfdsim, as another node would have it.
kfdsim_load() {
	if grep -q '^kfdsim ' /proc/modules; then
		rmmod kfdsim || return 1
	fi
	insmod "$KO" num_gpus="$1" id_seed="$2"
}

# devices_confined MINOR... -- COMMAND: run COMMAND in a (v1) device
# cgroup that allows, of the render nodes, only renderD<MINOR>...  kfdsim,
# like amdkfd, shows a process only the GPUs its device cgroup allows.
devices_confined() {
	local minors=() m cg=/run/kfdcr-devcg rc
	while [ "$1" != -- ]; do minors+=("$1"); shift; done
	shift
	mkdir -p "$cg"
	mountpoint -q "$cg" || mount -t cgroup -o devices none "$cg"
	mkdir -p "$cg/confined"
	for m in $(seq 128 191); do
		[[ " ${minors[*]} " == *" $m "* ]] && continue
		echo "c 226:$m rwm" >"$cg/confined/devices.deny"
	done
	(echo $BASHPID >"$cg/confined/cgroup.procs" && "$@")
	rc=$?
	return $rc
}

gpu_ids() {
	cat /sys/devices/virtual/kfd/kfd/topology/nodes/*/gpu_id | grep -v '^0$' | sort | tr '\n' ' '
}

# Long enough that a dump always finds it running (kfdsim does some
# hundred iterations a second under TCG).
WL_ARGS=(--gpus 2 --iterations 1500 --seed 7 --progress 50)

# Start the workload detached (criu needs a session of its own), wait
# until it has done some iterations.
start_workload() {
	setsid "$WL" "${WL_ARGS[@]}" "$@" </dev/null >"$WORK/wl.out" 2>&1 &
	WL_PID=$!
	wait_for 120 "grep -q 'iteration 100/' $WORK/wl.out"
}

expected_result() {
	"$WL" --cpu "${WL_ARGS[@]}" | sed -n 's/^result: //p'
}

# Wait for the (restored) workload to print its result; echo it.
final_result() {
	wait_for 300 "grep -q '^result: ' $WORK/wl.out" || return 1
	sed -n 's/^result: //p' "$WORK/wl.out"
}

criu_dump() { # DIR [criu options]
	local dir=$1
	shift
	log_run criu dump -t "$WL_PID" -D "$dir" -L "$PLUGIN_DIR" -v4 \
		-o "$LOGP-dump.log" "$@"
}

criu_restore() { # DIR [criu options]
	local dir=$1
	shift
	log_run criu restore -d -D "$dir" -L "$PLUGIN_DIR" -v4 \
		-o "$LOGP-restore.log" "$@"
}

@test "criu plugin: dump, reload kfdsim with other gpu_ids, restore: the uninterrupted result" {
	kfdsim_load 2 11
	old_ids=$(gpu_ids)
	want=$(expected_result)
	start_workload
	criu_dump "$WORK/img"
	! kill -0 "$WL_PID" 2>/dev/null
	ls "$WORK/img" | grep -q '^kfdcr-kfd-.*\.img$'

	kfdsim_load 2 12
	new_ids=$(gpu_ids)
	echo "gpu_ids before: $old_ids after: $new_ids"
	[ "$old_ids" != "$new_ids" ]
	criu_restore "$WORK/img"
	grep -q 'kfdcr_plugin: pid .*: GPU queues resumed' "$LOGP-restore.log"
	got=$(final_result)
	echo "result $got, expected $want"
	[ -n "$want" ]
	[ "$got" = "$want" ]
}

@test "criu plugin: dump --leave-running: the workload keeps running and finishes correctly" {
	kfdsim_load 2 13
	want=$(expected_result)
	start_workload
	criu_dump "$WORK/img" --leave-running
	kill -0 "$WL_PID"
	grep -q 'UNPAUSE' "$LOGP-dump.log"
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: a dump that fails midway (unwritable image folder) leaves the workload running" {
	kfdsim_load 2 14
	want=$(expected_result)
	start_workload
	# criu opens its own images first; make only our image names fail.
	mkdir -p "$WORK/ro"
	for i in $(seq 0 64); do mkdir -p "$WORK/ro/kfdcr-kfd-$i.img"; done
	run ! criu dump -t "$WL_PID" -D "$WORK/ro" -L "$PLUGIN_DIR" -v4 -o "$LOGP-dump.log"
	grep -q 'kfdcr_plugin: Error' "$LOGP-dump.log"
	kill -0 "$WL_PID"
	n=$(grep -c 'iteration' "$WORK/wl.out")
	wait_for 60 "[ \$(grep -c iteration $WORK/wl.out) -gt $n ]"
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: restore onto a target set of 2 of 4 GPUs uses exactly those" {
	kfdsim_load 2 15
	want=$(expected_result)
	start_workload
	criu_dump "$WORK/img"

	# As Slurm's ConstrainDevices does: the restoring task may use only
	# renderD130 and renderD131 of the 4 GPUs, and says so in the target set.
	kfdsim_load 4 16
	KFDCR_TARGET_GPUS=renderD130,renderD131 devices_confined 130 131 -- \
		criu_restore "$WORK/img"
	grep 'local GPU' "$LOGP-restore.log"
	[ "$(grep -c 'local GPU .*/dev/dri/renderD13[01]$' "$LOGP-restore.log")" -eq 2 ]
	! grep -q 'local GPU .*/dev/dri/renderD12[89]$' "$LOGP-restore.log"
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: an impossible target set fails with a clear error and leaves nothing running" {
	kfdsim_load 2 17
	start_workload
	criu_dump "$WORK/img"
	kfdsim_load 4 18
	KFDCR_TARGET_GPUS=renderD129 run ! criu restore -d -D "$WORK/img" -L "$PLUGIN_DIR" \
		-v4 -o "$LOGP-restore.log"
	grep 'kfdcr_plugin: Error' "$LOGP-restore.log"
	grep -q 'no GPU mapping within KFDCR_TARGET_GPUS=renderD129' "$LOGP-restore.log"
	! pgrep -f kfd-workload
}

@test "criu plugin: checkpoint, restore on other GPUs, checkpoint again, restore again" {
	kfdsim_load 2 19
	want=$(expected_result)
	start_workload
	criu_dump "$WORK/img"
	kfdsim_load 2 20
	criu_restore "$WORK/img"
	n=$(grep -c 'iteration' "$WORK/wl.out")
	wait_for 60 "[ \$(grep -c iteration $WORK/wl.out) -gt $((n + 1)) ]"

	mkdir -p "$WORK/img2"
	LOGP=$LOGP-second criu_dump "$WORK/img2"
	kfdsim_load 2 21
	LOGP=$LOGP-second criu_restore "$WORK/img2"
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: a flipped bit, a truncated file or a wrong version is caught before restore" {
	kfdsim_load 2 22
	start_workload
	criu_dump "$WORK/img"
	kfdcr image verify "$WORK/img"
	data=$(cd "$WORK/img" && ls kfdcr-kfd-*-gpu0.data | head -n 1)
	manifest=$(cd "$WORK/img" && ls kfdcr-kfd-*.img | head -n 1)

	for damage in bitflip truncate version; do
		rm -rf "$WORK/bad"
		cp -a "$WORK/img" "$WORK/bad"
		case $damage in
		bitflip)
			size=$(stat -c %s "$WORK/bad/$data")
			off=$((size / 2))
			byte=$(od -An -tu1 -j "$off" -N1 "$WORK/bad/$data" | tr -d ' ')
			printf "$(printf '\\%03o' $((byte ^ 4)))" |
				dd of="$WORK/bad/$data" bs=1 seek="$off" conv=notrunc status=none
			;;
		truncate)
			truncate -s -100 "$WORK/bad/$data" ;;
		version)
			printf '\x02\x00' | dd of="$WORK/bad/$manifest" bs=1 seek=8 conv=notrunc status=none ;;
		esac
		run ! kfdcr image verify "$WORK/bad"
		echo "$damage: $output"
		run ! criu restore -d -D "$WORK/bad" -L "$PLUGIN_DIR" -v4 -o "$LOGP-restore-$damage.log"
		grep 'kfdcr_plugin: Error' "$LOGP-restore-$damage.log"
		! pgrep -f kfd-workload
	done
	grep -qi 'version' "$LOGP-restore-version.log"
}
