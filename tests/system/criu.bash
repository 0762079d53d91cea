# SPDX-License-Identifier: GPL-2.0-or-later
#
# What the CRIU system tests (criu-plugin.bats, criu-sdma.bats) share: the
# kfdsim reload that stands for another node, and the GPU workload they
# dump and restore ($WL, output in $WORK/wl.out, pid in $WL_PID).

# kfdsim_load NUM_GPUS SEED: (re)load kfdsim, as another node would have it.
kfdsim_load() {
	if grep -q '^kfdsim ' /proc/modules; then
		rmmod kfdsim || return 1
	fi
	insmod "$KO" num_gpus="$1" id_seed="$2"
}

# The gpu_ids kfdsim shows, sorted, on one line.
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

# The result of the same work on the CPU.
expected_result() {
	"$WL" --cpu "${WL_ARGS[@]}" | sed -n 's/^result: //p'
}

# Wait for the (restored) workload to print its result; echo it.
final_result() {
	wait_for 300 "grep -q '^result: ' $WORK/wl.out" || return 1
	sed -n 's/^result: //p' "$WORK/wl.out"
}
