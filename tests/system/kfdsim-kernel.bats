#!/usr/bin/env bats
# SPDX-License-Identifier: GPL-2.0-only
#
# kfdsim kernel-side tests: the topology in amdkfd's format, an unmodified
# libhsakmt client, device-cgroup filtering with a cgroup v2 BPF device
# program, and gpu_ids that follow id_seed.  Runs in the test bed as root
# with kfdsim loaded (tests/testbed/run); helper programs are built from
# kernel/tests/ with the host's gcc into the test's scratch folder.

bats_require_minimum_version 1.5.0

setup_file() {
	export TOPO=/sys/devices/virtual/kfd/kfd/topology
	export KSRC=${KFDCR_SRCDIR:-$PWD}/kernel/tests
}

setup() {
	[ -e /dev/kfd ] || skip "/dev/kfd missing: kfdsim is not loaded"
	[ -d /sys/module/kfdsim ] || skip "/dev/kfd is not kfdsim's"
}

teardown() {
	if [ -n "${KFDSIM_DEFAULTS:-}" ]; then
		# a test reloaded kfdsim and failed half way: put it back as it was
		rmmod kfdsim 2>/dev/null || true
		insmod "${KFDCR_SRCDIR:-$PWD}/kernel/kfdsim.ko" $KFDSIM_DEFAULTS || true
	fi
	if [ -n "${WL_PID:-}" ]; then
		kill -9 "$WL_PID" 2>/dev/null || true
		wait "$WL_PID" 2>/dev/null || true
	fi
}

# The parameters kfdsim was loaded with that are not its defaults.
load_args() {
	local p=/sys/module/kfdsim/parameters args
	args="num_gpus=$(cat $p/num_gpus) vram_mb=$(cat $p/vram_mb) id_seed=$(cat $p/id_seed)"
	args+=" xgmi=$(tr YN 10 <$p/xgmi) chunk_kb=$(cat $p/chunk_kb)"
	args+=" chunk_delay_us=$(cat $p/chunk_delay_us)"
	echo "$args"
}

gpu_nodes() {
	local d
	for d in "$TOPO"/nodes/*; do
		[ "$(cat "$d/gpu_id")" != 0 ] && echo "${d##*/}"
	done
	return 0
}

# Build kernel/tests/$1.c into $BATS_TEST_TMPDIR/$1 (extra args: libraries).
build_helper() {
	local name=$1
	shift
	command -v gcc >/dev/null || skip "no gcc in the test bed"
	mkdir -p "$BATS_TEST_TMPDIR/inc"
	ln -sfn /usr/include/libdrm "$BATS_TEST_TMPDIR/inc/drm"
	gcc -O2 -Wall -I"$BATS_TEST_TMPDIR/inc" -I"$KSRC/.." -o "$BATS_TEST_TMPDIR/$name" \
		"$KSRC/$name.c" "$@"
}

GPU_KEYS="cpu_cores_count simd_count mem_banks_count caches_count io_links_count
p2p_links_count cpu_core_id_base simd_id_base max_waves_per_simd lds_size_in_kb
gds_size_in_kb num_gws wave_front_size array_count simd_arrays_per_engine
cu_per_simd_array simd_per_cu max_slots_scratch_cu gfx_target_version vendor_id
device_id location_id domain drm_render_minor hive_id num_sdma_engines
num_sdma_xgmi_engines num_sdma_queues_per_engine num_cp_queues
max_engine_clk_fcompute local_mem_size fw_version capability sdma_fw_version
unique_id max_engine_clk_ccompute"

prop() { sed -n "s/^$2 //p" "$1"; }

@test "kfdsim topology: every file and key in amdkfd's format and order" {
	local n d f keys want
	[ -f "$TOPO/generation_id" ]
	[[ "$(cat "$TOPO/generation_id")" =~ ^[0-9]+$ ]]
	[ "$(cat "$TOPO/system_properties")" = "$(printf 'platform_oem 0\nplatform_id 0\nplatform_rev 0')" ]
	[ "$(cat "$TOPO/nodes/0/gpu_id")" = 0 ]
	[ "$(prop "$TOPO/nodes/0/properties" cpu_cores_count)" -gt 0 ]
	want=$(echo $GPU_KEYS)
	for n in $(gpu_nodes); do
		d=$TOPO/nodes/$n
		for f in gpu_id name properties mem_banks caches io_links p2p_links perf; do
			[ -e "$d/$f" ] || { echo "missing $d/$f"; false; }
		done
		# every line "key value", keys exactly amdkfd's GPU list in its order
		! grep -vE '^[a-z0-9_]+ [0-9]+$' "$d/properties" || false
		keys=$(cut -d' ' -f1 "$d/properties" | tr '\n' ' ' | sed 's/ $//')
		[ "$keys" = "$want" ] || { echo "keys: $keys"; false; }
		[ "$(prop "$d/properties" cpu_cores_count)" = 0 ]
		[ "$(prop "$d/properties" simd_per_cu)" -gt 0 ]
		[ "$(prop "$d/properties" simd_arrays_per_engine)" -gt 0 ]
		[ "$(prop "$d/properties" gfx_target_version)" -gt 0 ]
		# no GWS (ALLOC_QUEUE_GWS fails, kfdsim-basic checks it)
		[ "$(prop "$d/properties" num_gws)" = 0 ]
		# one properties file per advertised bank, cache and link
		[ "$(ls "$d/mem_banks" | wc -l)" = "$(prop "$d/properties" mem_banks_count)" ]
		[ "$(ls "$d/caches" | wc -l)" = "$(prop "$d/properties" caches_count)" ]
		[ "$(ls "$d/io_links" | wc -l)" = "$(prop "$d/properties" io_links_count)" ]
		[ "$(prop "$d/mem_banks/0/properties" heap_type)" = 1 ]
		[ "$(prop "$d/mem_banks/0/properties" size_in_bytes)" -gt 0 ]
		[ "$(cut -d' ' -f1 "$d/mem_banks/0/properties" | tr '\n' ' ')" = "heap_type size_in_bytes flags width mem_clk_max " ]
		[ "$(cut -d' ' -f1 "$d/io_links/0/properties" | tr '\n' ' ')" = "type version_major version_minor node_from node_to weight min_latency max_latency min_bandwidth max_bandwidth recommended_transfer_size flags " ]
		[ "$(prop "$d/io_links/0/properties" node_to)" = 0 ]
		[ "$(prop "$d/io_links/0/properties" node_from)" = "$n" ]
		grep -q '^sibling_map [01]\(,[01]\)*$' "$d/caches/0/properties"
	done
	[ "$(ls "$TOPO/nodes/0/io_links" | wc -l)" = "$(gpu_nodes | wc -l)" ]
}

@test "kfdsim topology: gpu_ids are 16-bit, non-zero and distinct, each with its render node" {
	local n id minor ids=()
	for n in $(gpu_nodes); do
		id=$(cat "$TOPO/nodes/$n/gpu_id")
		[ "$id" -gt 0 ]
		[ "$id" -lt 65536 ]
		ids+=("$id")
		minor=$(prop "$TOPO/nodes/$n/properties" drm_render_minor)
		[ "$minor" -ge 128 ]
		[ -c "/dev/dri/renderD$minor" ]
		[[ "$(readlink -f "/sys/class/drm/renderD$minor/device")" == */kfdsim.* ]]
	done
	[ "${#ids[@]}" -ge 1 ]
	[ "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" = "${#ids[@]}" ]
}

@test "kfdsim ioctls: events, barriers, faults, mappings and their errnos" {
	build_helper kfdsim-basic
	run "$BATS_TEST_TMPDIR/kfdsim-basic"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"kfdsim-basic: ok"* ]]
	[[ $output == *"memory exception va 500000000"* ]]
}

@test "kfdsim libhsakmt: an unmodified libhsakmt client opens, allocates, maps, creates an event and a queue" {
	[ -e /usr/lib/x86_64-linux-gnu/libhsakmt.so ] || skip "libhsakmt-dev is not installed"
	build_helper kfdsim-hsakmt-client -lhsakmt
	run -0 "$BATS_TEST_TMPDIR/kfdsim-hsakmt-client"
	echo "$output"
	[[ $output == *"version 1.11"* ]]
	[[ $output == *"gpus $(gpu_nodes | wc -l)"* ]]
	[[ $output == *"libhsakmt client: ok"* ]]
}

@test "kfdsim device cgroup: a BPF device program denying a render node hides that GPU" {
	local cg=/sys/fs/cgroup/kfdsim-devcg-$$ n first minor total
	[ -f /sys/fs/cgroup/cgroup.controllers ] || skip "no cgroup v2 at /sys/fs/cgroup"
	total=$(gpu_nodes | wc -l)
	[ "$total" -ge 2 ] || skip "needs 2 GPUs"
	first=$(gpu_nodes | head -n 1)
	minor=$(prop "$TOPO/nodes/$first/properties" drm_render_minor)
	build_helper kfdsim-devcg
	mkdir "$cg"
	run "$BATS_TEST_TMPDIR/kfdsim-devcg" "$cg" "$minor"
	rmdir "$cg" || true
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"render: Operation not permitted"* ]]
	[[ $output == *"visible: $((total - 1))"* ]]
	[[ $output == *"node $first: Operation not permitted"* ]]
	# mmap offsets naming the GPU the process lacks: amdkfd's EINVAL
	[[ $output == *"doorbell mmap of the hidden GPU: EINVAL"* ]]
	[[ $output == *"mmio mmap of the hidden GPU: EINVAL"* ]]
	# the other GPUs stay readable
	for n in $(gpu_nodes | tail -n +2); do
		[[ $output == *"node $n: $(cat "$TOPO/nodes/$n/gpu_id")"* ]]
	done
	# and outside that cgroup nothing changed
	[ "$(cat "$TOPO/nodes/$first/gpu_id")" -gt 0 ]
}

@test "kfdsim device cgroup: a process without GPUs gets ENODEV from PROCESS_INFO and CHECKPOINT" {
	local cg=/sys/fs/cgroup/kfdsim-nogpu-$$
	[ -f /sys/fs/cgroup/cgroup.controllers ] || skip "no cgroup v2 at /sys/fs/cgroup"
	build_helper kfdsim-devcg
	mkdir "$cg"
	run "$BATS_TEST_TMPDIR/kfdsim-devcg" "$cg" all
	rmdir "$cg" || true
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"visible: 0"* ]]
	[[ $output == *"process_info: ENODEV"* ]]
	[[ $output == *"checkpoint: ENODEV"* ]]
}

@test "kfdsim module: another id_seed gives other gpu_ids; the same seed the same ones; DRM offsets differ between loads" {
	local p=/sys/module/kfdsim/parameters before after again args other off1 off2
	local ko=${KFDCR_SRCDIR:-$PWD}/kernel/kfdsim.ko
	build_helper kfdsim-basic
	off1=$("$BATS_TEST_TMPDIR/kfdsim-basic" offset | sed -n 's/^gtt offset //p')
	args=$(load_args)
	other=$(sed "s/id_seed=\([0-9]*\)/id_seed=\1424/" <<<"$args")
	before=$(cat "$TOPO"/nodes/*/gpu_id | tr '\n' ' ')
	rmmod kfdsim || skip "kfdsim is in use"
	insmod "$ko" $other || { insmod "$ko" $args; false; }
	after=$(cat "$TOPO"/nodes/*/gpu_id | tr '\n' ' ')
	rmmod kfdsim
	insmod "$ko" $args
	again=$(cat "$TOPO"/nodes/*/gpu_id | tr '\n' ' ')
	off2=$("$BATS_TEST_TMPDIR/kfdsim-basic" offset | sed -n 's/^gtt offset //p')
	echo "before: $before after: $after again: $again; first GTT offsets $off1 $off2"
	[ "$before" != "$after" ]
	[ "$before" = "$again" ]
	[ -n "$off1" ]
	[ -n "$off2" ]
	[ "$off1" != "$off2" ]
}

@test "kfdsim module: stable_offsets, user_id_offsets and vram_poison=0 relax what they name, and only that" {
	local p=/sys/module/kfdsim/parameters ko=${KFDCR_SRCDIR:-$PWD}/kernel/kfdsim.ko
	local bin=${KFDCR_BUILDDIR:-$PWD}/tests/kfd img=$BATS_TEST_TMPDIR/img args i
	[ -x "$bin/kfd-ckpt" ] && [ -x "$bin/kfd-workload" ] || skip "tests/kfd not built in ${KFDCR_BUILDDIR:-$PWD}"
	[ "$(gpu_nodes | wc -l)" -ge 2 ] || skip "needs 2 GPUs"
	if [ "$(cat $p/stable_offsets)" = Y ] || [ "$(cat $p/user_id_offsets)" = Y ] ||
		[ "$(cat $p/vram_poison)" = 0 ]; then
		skip "kfdsim is loaded relaxed already"
	fi
	build_helper kfdsim-basic
	# defaults: an offset is not handed out twice, new VRAM is poisoned
	run -0 "$BATS_TEST_TMPDIR/kfdsim-basic" relaxed
	echo "defaults: $output"
	[[ $output =~ "gtt offsets "(0x[0-9a-f]+)" "(0x[0-9a-f]+) ]]
	[ "${BASH_REMATCH[1]}" != "${BASH_REMATCH[2]}" ]
	[[ $output == *"new vram: 16384 of 16384 words not zero"* ]]

	args=$(load_args)
	rmmod kfdsim || skip "kfdsim is in use"
	KFDSIM_DEFAULTS=$args
	insmod "$ko" $args stable_offsets=1 user_id_offsets=1 vram_poison=0
	[ "$(cat $p/stable_offsets)" = Y ]
	[ "$(cat $p/user_id_offsets)" = Y ]
	[ "$(cat $p/vram_poison)" = 0 ]
	# stable_offsets: the freed offset comes back; vram_poison=0: zeroed VRAM
	run -0 "$BATS_TEST_TMPDIR/kfdsim-basic" relaxed
	echo "relaxed: $output"
	[[ $output =~ "gtt offsets "(0x[0-9a-f]+)" "(0x[0-9a-f]+) ]]
	[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
	[[ $output == *"new vram: 0 of 16384 words not zero"* ]]
	# user_id_offsets: a process restored onto other GPUs gets doorbell
	# offsets with its own (user) gpu_ids, and mmap takes them
	"$bin/kfd-workload" --gpus 2 --iterations 1000 --seed 2 >"$BATS_TEST_TMPDIR/wl.out" 2>&1 3>&- &
	WL_PID=$!
	for ((i = 0; i < 300; i++)); do
		grep -qs "iteration 1/1000 done" "$BATS_TEST_TMPDIR/wl.out" && break
		sleep 0.1
	done
	run -0 "$bin/kfd-ckpt" dump "$WL_PID" "$img" --kill
	wait "$WL_PID" || true
	WL_PID=
	run -0 "$bin/kfd-ckpt" try restore-valid "$img" --gpus rotate
	echo "$output"
	[[ $output == *"mapping and filling the restored BOs: ok"* ]]
	[[ $output =~ "names gpu 0x"([0-9a-f]+)" (user 0x"([0-9a-f]+)", actual 0x"([0-9a-f]+)")" ]]
	[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
	[ "${BASH_REMATCH[2]}" != "${BASH_REMATCH[3]}" ]

	rmmod kfdsim
	insmod "$ko" $args
	KFDSIM_DEFAULTS=
	[ "$(cat $p/stable_offsets)" = N ]
	[ "$(cat $p/user_id_offsets)" = N ]
	[ "$(cat $p/vram_poison)" != 0 ]
}
