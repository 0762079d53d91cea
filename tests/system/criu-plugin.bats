#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The CRIU plugin with Debian's criu, on kfdsim: dump a running GPU
# workload, reload kfdsim with another id seed (other gpu_ids, as on
# another node), restore, and compare the final result with the CPU's.
# Also: the mappings criu re-creates (New mmap) and the fds the plugin
# leaves, VRAM zero pages, several /dev/kfd files in one process,
# --leave-running, failed dumps, GPU counts and target sets, repeated
# checkpoints, damaged files of every kind, and --lazy-pages.
#
# This file reloads kfdsim with its own GPU counts and seeds; teardown_file
# puts the test bed's module back.

load criu

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
	[ -n "${NB_PID:-}" ] && kill -9 "$NB_PID" 2>/dev/null
	[ -n "${LAZY_PID:-}" ] && kill -9 "$LAZY_PID" 2>/dev/null
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

# fd_list PID: the process's fd numbers, sorted.
fd_list() {
	ls "/proc/$1/fd" | sort -n
}

# device_vmas PID PATTERN: how many of its mappings are of PATTERN's files.
device_vmas() {
	grep -c "$2" "/proc/$1/maps" || true
}

# A neighbour on the GPUs (another job of the node): its BOs take the
# render-node mmap offsets a freshly loaded kfdsim would hand out first,
# so a restored process's BOs get other offsets than at its dump.
start_neighbour() {
	setsid "$WL" --gpus 2 --iterations 10000 --progress 1 </dev/null >"$WORK/nb.out" 2>&1 &
	NB_PID=$!
	wait_for 120 "grep -q 'iteration 1/' $WORK/nb.out"
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
	fds_before=$(fd_list "$WL_PID")
	kfd_vmas=$(device_vmas "$WL_PID" /dev/kfd)
	render_vmas=$(device_vmas "$WL_PID" /dev/dri/renderD)
	criu_dump "$WORK/img"
	! kill -0 "$WL_PID" 2>/dev/null || false
	ls "$WORK/img" | grep -q '^kfdcr-kfd-.*\.img$'

	kfdsim_load 2 12
	new_ids=$(gpu_ids)
	echo "gpu_ids before: $old_ids after: $new_ids"
	[ "$old_ids" != "$new_ids" ]
	start_neighbour
	criu_restore "$WORK/img"
	grep -q 'kfdcr_plugin: pid .*: GPU queues resumed' "$LOGP-restore.log"
	# by default (KFDCR_DATA_PATH=auto) the GPU's SDMA engine moved the data
	grep -q 'saved as kfdcr-kfd-[0-9]* by SDMA' "$LOGP-dump.log"
	grep -q 'bytes of BO data, [0-9]* read, by SDMA in' "$LOGP-restore.log"

	# criu took every device mapping's new offset from the plugin: the
	# doorbells' (/dev/kfd, criu opens it: fd -1) and the BOs' through
	# the render file of their new GPU, at other offsets than at the dump.
	grep 'New mmap' "$LOGP-restore.log"
	echo "device mappings at the dump: $kfd_vmas /dev/kfd, $render_vmas render"
	[ "$kfd_vmas" -ge 2 ]
	[ "$render_vmas" -ge 2 ]
	[ "$(grep -c 'New mmap .* fd -1$' "$LOGP-restore.log")" -eq "$kfd_vmas" ]
	[ "$(grep -cE 'New mmap .* fd [0-9]+$' "$LOGP-restore.log")" -eq "$render_vmas" ]
	moved=$(sed -n 's/.*New mmap 0x[0-9a-f]*:\(0x[0-9a-f]*\)->\(0x[0-9a-f]*\) fd [0-9][0-9]*$/\1 \2/p' \
		"$LOGP-restore.log" | awk '$1 != $2' | wc -l)
	echo "render mappings at another offset: $moved"
	[ "$moved" -eq "$render_vmas" ]
	kill -9 "$NB_PID"

	# The restored process has its own fds back, plus one render fd per
	# GPU (KFD's drm files) above all of them: no fd per mapping.
	fds_after=$(fd_list "$WL_PID")
	added=$(comm -13 <(echo "$fds_before" | sort) <(echo "$fds_after" | sort) | sort -n)
	echo "fds before: $(echo $fds_before) after: $(echo $fds_after)"
	[ "$(echo "$added" | wc -w)" -eq 2 ]
	[ -z "$(comm -23 <(echo "$fds_before" | sort) <(echo "$fds_after" | sort))" ]
	for fd in $added; do
		[ "$fd" -gt "$(echo "$fds_before" | tail -n 1)" ]
		readlink "/proc/$WL_PID/fd/$fd" | grep -q '^/dev/dri/renderD'
	done

	got=$(final_result)
	echo "result $got, expected $want"
	[ -n "$want" ]
	[ "$got" = "$want" ]
}

@test "criu plugin: VRAM pages that were zero at the dump are zero after a restore onto new VRAM" {
	kfdsim_load 2 23
	want=$(expected_result)
	# 1 MiB of VRAM per GPU cleared at the start, checked at the end.
	start_workload --vram-zero-kb 1024
	criu_dump "$WORK/img"
	kfdcr image show "$WORK/img"
	kfdsim_load 2 24
	# Dry run of the restore mapping on the new devices: every GPU image
	# maps, the render/kfdref fd records are passed over, not failed.
	run kfdcr image map "$WORK/img"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'gpu_id 0x[0-9a-f]* -> gpu_id' <<<"$output")" -eq 2 ]
	criu_restore "$WORK/img"
	zeroed=$(sed -n 's/.*; \([0-9]*\) bytes of zero pages written into VRAM.*/\1/p' "$LOGP-restore.log")
	echo "zero pages written into VRAM: $zeroed bytes"
	[ "$zeroed" -ge $((2 * 512 * 1024)) ]
	# by the engine, not by the CPU (KFDCR_DATA_PATH=auto)
	grep -q 'bytes of zero pages written into VRAM by the engine (CONSTANT_FILL)' "$LOGP-restore.log"

	# Each byte is read once: the restored task (criu restores its
	# memory, the plugin its GPU state, both inside it) read less than
	# all the images hold plus 1 MiB of /proc and sysfs; reading the
	# BO data twice would not fit.
	data=$(cat "$WORK"/img/kfdcr-kfd-*.data | wc -c)
	all=$(cat "$WORK"/img/* | wc -c)
	rchar=$(sed -n 's/^rchar: //p' "/proc/$WL_PID/io")
	echo "read by the restored task: $rchar bytes; images: $all bytes, $data of BO data"
	[ "$data" -gt $((4 << 20)) ]
	[ "$rchar" -lt $((all + (1 << 20))) ]
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: a process with two /dev/kfd files (one thread, or a second thread) is dumped once and restored" {
	seed=25
	for mode in open thread; do
		echo "--- a second /dev/kfd fd: $mode"
		kfdsim_load 2 $seed
		want=$(expected_result)
		rm -rf "$WORK/img" && mkdir -p "$WORK/img"
		case $mode in
		open) start_workload --kfd-fds 1 ;;
		thread) start_workload --kfd-thread ;;
		esac
		[ "$(ls -l /proc/$WL_PID/fd | grep -c /dev/kfd)" -eq 2 ]
		LOGP=$LOGP-$mode criu_dump "$WORK/img"
		ls "$WORK/img" | grep kfdcr
		# One KFD image and one record pointing at it; paused and
		# unpaused once.
		[ "$(ls "$WORK/img" | grep -c '^kfdcr-kfd-[0-9]*\.img$')" -eq 1 ]
		[ "$(ls "$WORK/img" | grep -c '^kfdcr-kfdref-[0-9]*\.img$')" -eq 1 ]
		[ "$(grep -c 'kfdcr_plugin: pid [0-9]*: 2 GPUs, ' "$LOGP-$mode-dump.log")" -eq 1 ]
		[ "$(grep -c 'resumed (UNPAUSE)' "$LOGP-$mode-dump.log")" -eq 1 ]
		grep -q 'another /dev/kfd file of the process' "$LOGP-$mode-dump.log"

		kfdsim_load 2 $((seed + 1))
		LOGP=$LOGP-$mode criu_restore "$WORK/img"
		grep -q 'another /dev/kfd file, of the KFD process restored' "$LOGP-$mode-restore.log"
		[ "$(ls -l /proc/$WL_PID/fd | grep -c /dev/kfd)" -eq 2 ]
		got=$(final_result)
		echo "result $got, expected $want"
		[ "$got" = "$want" ]
		kill -9 "$WL_PID" 2>/dev/null || true
		seed=$((seed + 2))
	done
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
	[ "$(grep -c 'local GPU .*/dev/dri/renderD13[01] (fd [0-9]*)$' "$LOGP-restore.log")" -eq 2 ]
	! grep -q 'local GPU .*/dev/dri/renderD12[89] ' "$LOGP-restore.log" || false
	got=$(final_result)
	[ "$got" = "$want" ]
}

@test "criu plugin: other GPU counts and impossible target sets fail early with a clear error, nothing left running" {
	kfdsim_load 2 17
	start_workload
	criu_dump "$WORK/img"
	kfdsim_load 4 18

	# KFD restores a process only where it sees as many GPUs as it had.
	run ! criu restore -d -D "$WORK/img" -L "$PLUGIN_DIR" -v4 -o "$LOGP-restore-count.log"
	grep 'kfdcr_plugin: Error' "$LOGP-restore-count.log"
	grep -q 'the checkpointed process had 2 GPUs and this task sees 4 (' "$LOGP-restore-count.log"
	! grep -q 'RESTORE of' "$LOGP-restore-count.log" || false
	! pgrep -f kfd-workload || false

	# Two visible, but the target set names one of them.
	KFDCR_TARGET_GPUS=renderD129 devices_confined 129 130 -- \
		run ! criu restore -d -D "$WORK/img" -L "$PLUGIN_DIR" -v4 -o "$LOGP-restore.log"
	grep 'kfdcr_plugin: Error' "$LOGP-restore.log"
	grep -q 'no GPU mapping within KFDCR_TARGET_GPUS=renderD129: 2 GPUs were checkpointed but only 1 target GPU is given' "$LOGP-restore.log"
	! pgrep -f kfd-workload || false
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

# damage FILE bitflip|magic|truncate: flip one bit in the middle or in
# the first byte (the magic), or cut the tail.
damage() {
	local size off byte
	case $2 in
	bitflip|magic)
		size=$(stat -c %s "$1")
		off=$((size / 2))
		[ "$2" = magic ] && off=0
		byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
		printf "$(printf '\\%03o' $((byte ^ 4)))" |
			dd of="$1" bs=1 seek="$off" conv=notrunc status=none
		;;
	truncate)
		truncate -s -16 "$1" ;;
	esac
}

@test "criu plugin: a flipped bit or a truncation in any file the plugin wrote is caught by verify and by restore" {
	kfdsim_load 2 22
	start_workload --kfd-fds 1
	criu_dump "$WORK/img"
	kfdcr image verify "$WORK/img"
	files=$(cd "$WORK/img" && ls | grep '^kfdcr-')
	echo "plugin files:" $files
	# a KFD image with its data files, render-node records, the record of
	# the second /dev/kfd file; all readable by their owner only
	echo "$files" | grep -q '^kfdcr-kfd-[0-9]*-gpu1\.data$'
	echo "$files" | grep -q '^kfdcr-render-[0-9]*\.img$'
	echo "$files" | grep -q '^kfdcr-kfdref-[0-9]*\.img$'
	for f in $files; do
		[ "$(stat -c %a "$WORK/img/$f")" = 600 ]
	done

	for f in $files; do
		for how in bitflip magic truncate; do
			rm -rf "$WORK/bad"
			cp -a "$WORK/img" "$WORK/bad"
			damage "$WORK/bad/$f" "$how"
			run ! kfdcr image verify "$WORK/bad"
			echo "$f, $how: $output" | grep FAILED
			run ! criu restore -d -D "$WORK/bad" -L "$PLUGIN_DIR" -v4 \
				-o "$LOGP-restore-$f-$how.log"
			grep 'kfdcr_plugin: Error' "$LOGP-restore-$f-$how.log" | head -n 2
			grep -q 'kfdcr_plugin: Error' "$LOGP-restore-$f-$how.log"
			! grep -q 'GPU queues resumed' "$LOGP-restore-$f-$how.log" || false
			! pgrep -f kfd-workload || false
		done
	done

	# A future format version: refused by name.
	manifest=$(cd "$WORK/img" && ls kfdcr-kfd-*.img | head -n 1)
	rm -rf "$WORK/bad"
	cp -a "$WORK/img" "$WORK/bad"
	printf '\x02\x00' | dd of="$WORK/bad/$manifest" bs=1 seek=8 conv=notrunc status=none
	run ! kfdcr image verify "$WORK/bad"
	run ! criu restore -d -D "$WORK/bad" -L "$PLUGIN_DIR" -v4 -o "$LOGP-restore-version.log"
	grep -qi 'version' "$LOGP-restore-version.log"
	! pgrep -f kfd-workload || false
}

@test "criu plugin: --lazy-pages is refused at dump and at restore, nothing left running" {
	kfdsim_load 2 31
	want=$(expected_result)
	start_workload
	run ! criu dump -t "$WL_PID" -D "$WORK/img" -L "$PLUGIN_DIR" -v4 -o "$LOGP-dump-lazy.log" \
		--lazy-pages
	grep -q 'kfdcr_plugin: Error: criu --lazy-pages cannot dump GPU (KFD) processes' "$LOGP-dump-lazy.log"
	kill -0 "$WL_PID"

	criu_dump "$WORK/img"
	# As a configuration file asks for it, with the page daemon waiting.
	echo lazy-pages >"$WORK/lazy.conf"
	(cd "$WORK/img" && exec criu lazy-pages -D "$WORK/img" -v4 -o "$LOGP-lazyd.log") 3>&- &
	LAZY_PID=$!
	wait_for 60 "[ -S $WORK/img/lazy-pages.socket ]"
	run ! criu restore --config "$WORK/lazy.conf" -d -D "$WORK/img" -L "$PLUGIN_DIR" -v4 \
		-o "$LOGP-restore-lazy.log"
	grep -q 'kfdcr_plugin: Error: criu --lazy-pages cannot restore GPU (KFD) processes' "$LOGP-restore-lazy.log"
	! pgrep -f kfd-workload || false
}
