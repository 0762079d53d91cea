#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# kfdsim's SDMA engine, dma-buf import and PCIe BAR model: every packet of
# the SDMA 4.x subset, the faults (bad address, bad opcode, malformed
# fields, ring overrun) with the process notified, SDMA queue slots, the
# eviction rules (PROCESS_INFO, and a RESTOREd process until RESUME), an
# SDMA stream checkpointed half way and restored onto another GPU,
# GET_DMABUF_INFO / IMPORT_DMABUF, bar_read_mbps / bar_write_mbps, and
# rmmod afterwards.
#
# Runs in the test bed as root with kfdsim loaded (tests/testbed/run);
# kfd-sdma and kfd-ckpt come from $KFDCR_BUILDDIR/tests/kfd.

bats_require_minimum_version 1.5.0

setup_file() {
	export KFD_BIN=${KFDCR_BUILDDIR:-$PWD}/tests/kfd
	export TOPO=/sys/devices/virtual/kfd/kfd/topology
	export PARAMS=/sys/module/kfdsim/parameters
}

setup() {
	[ -e /dev/kfd ] || skip "/dev/kfd missing: kfdsim is not loaded"
	[ -d /sys/module/kfdsim ] || skip "/dev/kfd is not kfdsim's"
	[ -x "$KFD_BIN/kfd-sdma" ] || skip "$KFD_BIN/kfd-sdma not built (make check builds it)"
	PATH=$KFD_BIN:$PATH
	RUN_PID=
	SAVED_PARAMS=()
	KFDSIM_RELOAD=()
	KFDSIM_KO=${KFDCR_KO:-${KFDCR_SRCDIR:-$PWD}/kernel/kfdsim.ko}
}

teardown() {
	local p
	if [ -n "${RUN_PID:-}" ]; then
		kill -9 "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	for p in "${SAVED_PARAMS[@]}"; do
		echo "${p#*=}" >"$PARAMS/${p%%=*}" || true
	done
	if [ ${#KFDSIM_RELOAD[@]} -gt 0 ]; then
		rmmod kfdsim 2>/dev/null || true
		insmod "$KFDSIM_KO" "${KFDSIM_RELOAD[@]}" || true
	fi
}

# set_param NAME VALUE: set a writable kfdsim parameter until teardown.
set_param() {
	SAVED_PARAMS+=("$1=$(cat "$PARAMS/$1")")
	echo "$2" >"$PARAMS/$1"
}

gpu_count() { grep -lvx 0 "$TOPO"/nodes/*/gpu_id | wc -l; }

# Run kfd-sdma CASE, show its output, require success and its "ok" line.
sdma_case() {
	run kfd-sdma "$@"
	printf '$ kfd-sdma %s\n%s\n' "$*" "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"kfd-sdma $1: ok"* ]]
}

result_of() { sed -n 's/^result: \(0x[0-9a-f]\{16\}\)$/\1/p' <<<"$1" | tail -n 1; }

# The module's current load parameters, to load it again the same way.
load_args() {
	local a="num_gpus=$(cat $PARAMS/num_gpus) vram_mb=$(cat $PARAMS/vram_mb)"
	a+=" id_seed=$(cat $PARAMS/id_seed) xgmi=$(tr YN 10 <$PARAMS/xgmi)"
	a+=" chunk_kb=$(cat $PARAMS/chunk_kb)"
	echo "$a"
}

@test "kfdsim sdma: every packet of the subset runs (fill, copy, fence, trap, poll, nop, ring wrap)" {
	sdma_case packets
	[[ $output == *"ok: TRAP signals event"* ]]
	[[ $output == *"ok: a COPY_LINEAR split by the ring's end runs"* ]]
}

@test "kfdsim sdma: a bad address, a bad opcode, malformed fields and ring overruns fault the queue, the process is notified" {
	sdma_case faults
	[[ $output == *"copy from an unmapped address: memory exception va 0x500000000"* ]]
	[[ $output == *"ok: an unknown opcode: the queue stopped"* ]]
	[[ $output == *"ok: ring overrun: HW_EXCEPTION event"* ]]
	[[ $output == *"ok: a write pointer not on a dword: the queue stopped"* ]]
	# a fault is logged, never a kernel warning or oops
	! dmesg | grep -E 'BUG:|WARNING:|Oops' | grep -i kfdsim || false
}

@test "kfdsim sdma: SDMA queue slots are the topology's; XGMI SDMA queues run only with xgmi=1" {
	local args
	sdma_case slots
	[[ $output == *"ok: SDMA queue 5 of 4 slots: ENOMEM"* ]]
	[[ $output == *"ok: XGMI SDMA queue 1 of 0 slots: ENOMEM"* ]]
	args=$(load_args)
	[[ $args == *"xgmi=0"* ]] || skip "kfdsim already has xgmi=1"
	rmmod kfdsim || skip "kfdsim is in use"
	KFDSIM_RELOAD=($args)
	insmod "$KFDSIM_KO" ${args/xgmi=0/xgmi=1}
	sdma_case slots
	[[ $output == *"ok: XGMI SDMA queue 3 runs"* ]]
	[[ $output == *"ok: XGMI SDMA queue 5 of 4 slots: ENOMEM"* ]]
	rmmod kfdsim
	insmod "$KFDSIM_KO" $args
	KFDSIM_RELOAD=()
}

@test "kfdsim sdma: PROCESS_INFO stops SDMA queues and UNPAUSE restarts them" {
	sdma_case evict
}

@test "kfdsim sdma: GET_DMABUF_INFO and IMPORT_DMABUF let a second process copy through a CHECKPOINT dma-buf; bad cases get amdkfd's errnos" {
	sdma_case dmabuf
	[[ $output == *"ok: IMPORT_DMABUF before ACQUIRE_VM: ENODEV"* ]]
	[[ $output == *"ok: the importer reads the exporter's"* ]]
	[[ $output == *"ok: GET_DMABUF_INFO of a memfd: EINVAL"* ]]
	if [ "$(gpu_count)" -ge 2 ]; then
		[[ $output == *"ok: IMPORT_DMABUF on another GPU than the BO's: EINVAL"* ]]
	fi
}

@test "kfdsim sdma: a stream checkpointed half way restores onto another GPU with the uninterrupted result; a queue made before RESUME waits" {
	local want img=$BATS_TEST_TMPDIR/img at total
	[ "$(gpu_count)" -ge 2 ] || skip "needs 2 GPUs"
	run -0 kfd-sdma run --mb 2 --rounds 4 --seed 5
	want=$(result_of "$output")
	[ -n "$want" ]
	# 64 KiB per step and 20 ms after each: over 6 s of copying; dump as
	# soon as the first packet is done
	set_param chunk_delay_us 20000
	kfd-sdma run --mb 2 --rounds 4 --seed 5 >"$BATS_TEST_TMPDIR/run.out" 2>&1 &
	RUN_PID=$!
	for ((i = 0; i < 300; i++)); do
		grep -q '^running:' "$BATS_TEST_TMPDIR/run.out" && break
		sleep 0.1
	done
	run kfd-ckpt dump "$RUN_PID" "$img" --kill
	cat "$BATS_TEST_TMPDIR/run.out"
	echo "$output"
	[ "$status" = 0 ]
	wait "$RUN_PID" || true
	RUN_PID=
	echo 0 >"$PARAMS/chunk_delay_us"
	run kfd-ckpt restore "$img" --gpus rotate -- "$KFD_BIN/kfd-sdma" --restore "$img"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"ok: a queue created before RESUME stays idle"* ]]
	[[ $output == *"ok: and runs after RESUME"* ]]
	# it was stopped with part of the stream done and part left
	at=$(sed -n 's/^restored at ring byte \([0-9]*\) of \([0-9]*\)$/\1/p' <<<"$output")
	total=$(sed -n 's/^restored at ring byte \([0-9]*\) of \([0-9]*\)$/\2/p' <<<"$output")
	[ "$at" -gt 0 ]
	[ "$at" -lt "$total" ]
	[ "$(result_of "$output")" = "$want" ]
}

@test "kfdsim BAR: bar_read_mbps and bar_write_mbps throttle CPU access to VRAM mappings (render node, dma-buf), not GTT" {
	local out rate
	out=$(kfd-sdma bar --mb 2)
	echo "unthrottled: $out"
	set_param bar_read_mbps 8
	set_param bar_write_mbps 16
	run -0 kfd-sdma bar --mb 2
	echo "throttled: $output"
	rate() { sed -n "s/^$1: \([0-9.]*\) MB\/s$/\1/p" <<<"$output" | cut -d. -f1; }
	# never faster than the model, not far below it either
	rate=$(rate 'vram read')
	[ "$rate" -le 8 ]
	[ "$rate" -ge 3 ]
	rate=$(rate 'vram dma-buf read')
	[ "$rate" -le 8 ]
	[ "$rate" -ge 3 ]
	rate=$(rate 'vram write')
	[ "$rate" -le 17 ]
	[ "$rate" -ge 6 ]
	rate=$(rate 'gtt read'); [ "$rate" -ge 40 ]
	# and off again at run time
	echo 0 >"$PARAMS/bar_read_mbps"
	echo 0 >"$PARAMS/bar_write_mbps"
	run -0 kfd-sdma bar --mb 2
	rate=$(rate 'vram read'); [ "$rate" -ge 40 ]
}

@test "kfdsim sdma: rmmod succeeds after all of this (no process, queue, import or dma-buf left)" {
	local args
	args=$(load_args)
	args+=" chunk_delay_us=$(cat $PARAMS/chunk_delay_us)"
	rmmod kfdsim
	KFDSIM_RELOAD=($args)
	insmod "$KFDSIM_KO" $args
	KFDSIM_RELOAD=()
	[ -e /dev/kfd ]
}
