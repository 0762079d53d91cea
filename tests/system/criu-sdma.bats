#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The CRIU plugin's SDMA data path on kfdsim: BO contents saved and
# restored by the copier's SDMA queues (KFDCR_DATA_PATH=sdma) onto other
# GPUs give the uninterrupted result; the CPU path (KFDCR_DATA_PATH=cpu)
# restores the same image to the same result; a process whose own SDMA
# queue is mid-stream is checkpointed and restored; with no SDMA queue
# left, auto falls back to the CPU and sdma fails the dump cleanly; the
# image the CPU wrote then restores through SDMA.
#
# Reloads kfdsim with its own GPU counts and seeds; teardown_file puts the
# test bed's module back.

load criu

setup_file() {
	load common
	export PLUGIN_DIR=$KFDCR_BUILDDIR/criu-plugin/.libs
	export KFD_BIN=$KFDCR_BUILDDIR/tests/kfd
	export WL=$KFD_BIN/kfd-workload
	export KO=$KFDCR_SRCDIR/kernel/kfdsim.ko
	export TB_GPUS=$((KFDCR_NODES * KFDCR_GPUS_PER_NODE))
	criu check >/dev/null 2>&1 || true
}

teardown_file() {
	pkill -9 -f kfd-workload || true
	pkill -9 -f kfd-sdma || true
	sleep 0.5
	if [ "${TB_GPUS:-0}" -gt 0 ]; then
		kfdsim_load "$TB_GPUS" "$KFDCR_SEED" || true
	fi
}

setup() {
	load common
	[ -e /dev/kfd ] || skip "kfdsim is not loaded"
	[ -f "$PLUGIN_DIR/kfdcr_plugin.so" ] || skip "kfdcr_plugin.so is not built"
	[ -x "$KFD_BIN/kfd-sdma" ] || skip "kfd-sdma is not built"
	WORK=$KFDCR_SHARED/criu-sdma-$BATS_TEST_NUMBER
	rm -rf "$WORK"
	mkdir -p "$WORK/img"
	WL_PID=
	HOLD_PID=
	LOGP=$KFDCR_LOGS/criu-sdma-$BATS_TEST_NUMBER
}

teardown() {
	[ -n "${WL_PID:-}" ] && kill -9 "$WL_PID" 2>/dev/null
	[ -n "${HOLD_PID:-}" ] && kill -9 "$HOLD_PID" 2>/dev/null
	pkill -9 -f kfd-workload || true
	pkill -9 -f 'kfd-sdma run' || true
	echo 0 >/sys/module/kfdsim/parameters/chunk_delay_us 2>/dev/null || true
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for f in "$LOGP"-*.log; do
			[ -f "$f" ] || continue
			echo "--- kfdcr lines of $(basename "$f") ---"
			grep -E 'Error|kfdcr_plugin' "$f" | grep -v 'hook\|mapping at' | tail -n 20
		done
		echo "--- workload output ---"
		tail -n 5 "$WORK/wl.out" 2>/dev/null
	fi
	return 0
}

criu_dump() { # PATH DIR [criu options]
	local path=$1 dir=$2
	shift 2
	KFDCR_DATA_PATH=$path log_run criu dump -t "$WL_PID" -D "$dir" -L "$PLUGIN_DIR" -v4 \
		-o "$LOGP-dump-$path.log" "$@"
}

criu_restore() { # PATH DIR [criu options]
	local path=$1 dir=$2
	shift 2
	KFDCR_DATA_PATH=$path log_run criu restore -d -D "$dir" -L "$PLUGIN_DIR" -v4 \
		-o "$LOGP-restore-$path.log" "$@"
}

# Restore DIR through PATH: its log says which path moved the data
# (MOVED: "by SDMA" or "by the CPU") and the workload ends with $want.
restore_expect() { # PATH DIR MOVED
	local got
	criu_restore "$1" "$2"
	grep -q "read, $3 in" "$LOGP-restore-$1.log"
	got=$(final_result)
	echo "$1: want $want got $got"
	[ "$got" = "$want" ]
}

@test "criu sdma: dump and restore onto other GPUs through SDMA give the uninterrupted result" {
	kfdsim_load 2 41
	old_ids=$(gpu_ids)
	want=$(expected_result)
	start_workload
	criu_dump sdma "$WORK/img"
	grep -q 'saved as kfdcr-kfd-[0-9]* by SDMA' "$LOGP-dump-sdma.log"
	! grep -q 'through SDMA failed' "$LOGP-dump-sdma.log" || false
	wait_for 10 "! kill -0 $WL_PID"

	kfdsim_load 2 42
	[ "$(gpu_ids)" != "$old_ids" ]
	restore_expect sdma "$WORK/img" 'by SDMA'
	grep -q 'SDMA copier started' "$LOGP-restore-sdma.log"
	grep -q 'restored from kfdcr-kfd-[0-9]*; [0-9]* bytes of BO data, [0-9]* read, by SDMA in' "$LOGP-restore-sdma.log"
	grep -q 'GPU queues resumed' "$LOGP-restore-sdma.log"
	# the copier and its socket are gone
	! ls -a "$WORK/img" | grep -q 'kfdcr-copier' || false
	! pgrep -f 'criu restore' || false
}

@test "criu sdma: forcing the CPU path restores the same image to the same result, and SDMA again after it" {
	kfdsim_load 2 43
	want=$(expected_result)
	start_workload
	criu_dump sdma "$WORK/img"
	cp -a "$WORK/img" "$WORK/img2"
	cp "$WORK/wl.out" "$WORK/wl.at-dump"	# criu checks the size of open files

	kfdsim_load 2 44
	restore_expect cpu "$WORK/img" 'by the CPU'
	! grep -q 'SDMA copier started' "$LOGP-restore-cpu.log" || false

	wait_for 30 "! kill -0 $WL_PID"
	cp "$WORK/wl.at-dump" "$WORK/wl.out"
	restore_expect sdma "$WORK/img2" 'by SDMA'
}

@test "criu sdma: a process with its own SDMA stream half done is checkpointed and restored onto other GPUs" {
	kfdsim_load 2 45
	want=$("$KFD_BIN/kfd-sdma" run --mb 2 --rounds 4 --seed 9 | sed -n 's/^result: //p')
	[ -n "$want" ]
	echo 20000 >/sys/module/kfdsim/parameters/chunk_delay_us
	setsid "$KFD_BIN/kfd-sdma" run --mb 2 --rounds 4 --seed 9 </dev/null >"$WORK/wl.out" 2>&1 &
	WL_PID=$!
	wait_for 60 "grep -q '^running:' $WORK/wl.out"
	criu_dump sdma "$WORK/img"
	! grep -q '^result:' "$WORK/wl.out" || false
	echo 0 >/sys/module/kfdsim/parameters/chunk_delay_us
	kfdsim_load 2 46
	restore_expect sdma "$WORK/img" 'by SDMA'
}

@test "criu sdma: with every SDMA queue taken, auto falls back to the CPU; sdma fails the dump and the process runs on; SDMA restores the CPU-written image" {
	kfdsim_load 2 47
	want=$(expected_result)
	"$KFD_BIN/kfd-sdma" hold >"$WORK/hold.out" 2>&1 &
	HOLD_PID=$!
	wait_for 30 "grep -q '^holding' $WORK/hold.out"
	cat "$WORK/hold.out"
	start_workload
	run ! criu_dump sdma "$WORK/img"
	grep -q 'through SDMA failed (KFDCR_DATA_PATH=sdma)' "$LOGP-dump-sdma.log"
	grep -q 'no SDMA queue on GPU' "$LOGP-dump-sdma.log"
	kill -0 "$WL_PID"
	grep -q 'queues of pid .* resumed (UNPAUSE)' "$LOGP-dump-sdma.log"
	! ls "$WORK/img" | grep -q '^kfdcr-kfd-' || false

	criu_dump auto "$WORK/img"
	grep -q 'through SDMA failed (.*no SDMA queue on GPU.*); the CPU does it' "$LOGP-dump-auto.log"
	grep -q 'saved as kfdcr-kfd-[0-9]* by the CPU' "$LOGP-dump-auto.log"
	cp -a "$WORK/img" "$WORK/img2"
	cp "$WORK/wl.out" "$WORK/wl.at-dump"
	restore_expect auto "$WORK/img" 'by the CPU'

	# the image the CPU wrote, restored through SDMA once queues are free
	wait_for 30 "! kill -0 $WL_PID"
	kill "$HOLD_PID"
	wait "$HOLD_PID" || true
	HOLD_PID=
	cp "$WORK/wl.at-dump" "$WORK/wl.out"
	restore_expect sdma "$WORK/img2" 'by SDMA'
}
