#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The kfdcr command on the test bed's real KFD topology (kfdsim): the
# parser reads every GPU the kernel exports, and the GPU mapping of a
# topology onto itself is the identity.  Runs as root inside the test bed.

setup() {
	load common
	[ -e /dev/kfd ] || skip "kfdsim is not loaded"
	KFDCR=$KFDCR_BUILDDIR/src/kfdcr
	[ -x "$KFDCR" ] || skip "src/kfdcr is not built"
	TOPO=/sys/devices/virtual/kfd/kfd/topology
}

sysfs_gpus() {
	local f n=0
	for f in "$TOPO"/nodes/*/gpu_id; do
		[ "$(cat "$f")" != 0 ] && n=$((n + 1))
	done
	echo "$n"
}

@test "kfdcr: topology show lists every kfdsim GPU with its render node" {
	run -0 "$KFDCR" topology show
	echo "$output"
	[ "$(grep -c ': GPU 0x' <<<"$output")" -eq "$(sysfs_gpus)" ]
	[ "$(sysfs_gpus)" -ge 1 ]
	for minor in $(sed -n 's/.*renderD\([0-9]*\),.*/\1/p' <<<"$output"); do
		[ -c "/dev/dri/renderD$minor" ]
	done
}

@test "kfdcr: topology show on a missing tree fails with the path" {
	run -1 "$KFDCR" topology show /nonexistent
	[[ $output == *"/nonexistent/generation_id"* ]]
}
