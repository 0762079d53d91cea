-- SPDX-License-Identifier: GPL-2.0-or-later
--
-- cli_filter/lua for kfdcr (slurm.conf: CliFilterPlugins=cli_filter/lua;
-- install as cli_filter.lua next to slurm.conf).
--
-- A batch job asking for --checkpoint gets what a checkpointed job needs,
-- unless it said otherwise:
--   --requeue               Slurm may requeue it (preemption, scontrol requeue)
--   --signal=B:SIG@TIME     its checkpoint signal reaches the batch script at
--                           preemption (PreemptParameters/SlurmctldParameters
--                           send_user_signal) and TIME seconds before the time
--                           limit, so the job checkpoints and is requeued
--   --open-mode=append      a requeue does not truncate its output, which the
--                           restored tasks go on writing
-- cli_filter runs in the user's sbatch: it is a convenience, not a policy.

-- seconds before the time limit the checkpoint signal comes (>= the
-- checkpoint time of your jobs; see bench/ and spank_kfdcr(8))
local signal_time = 300
-- the site's default checkpoint signal (plugstack.conf signal=)
local site_signal = "USR1"

function slurm_cli_setup_defaults(options, early_pass)
	return slurm.SUCCESS
end

function slurm_cli_pre_submit(options, offset)
	if options["type"] ~= "sbatch" then
		return slurm.SUCCESS
	end
	local spank = options["spank"]
	local k = spank and spank["kfdcr"]
	if k == nil or k["checkpoint"] == nil then
		return slurm.SUCCESS
	end
	local sig = k["checkpoint-signal"] or site_signal
	-- unset options read back as "unset", nil, or "0@0" (--signal)
	if options["requeue"] == nil or options["requeue"] == "unset" then
		options["requeue"] = "1"
	elseif options["requeue"] == "no-requeue" then
		slurm.log_info("kfdcr: --no-requeue: this job cannot come back after a preemption")
	end
	local s = options["signal"]
	if s == nil or s == "" or string.match(s, "^[0@]*$") then
		options["signal"] = "B:" .. sig .. "@" .. signal_time
	end
	if options["open-mode"] == nil or options["open-mode"] == "" then
		options["open-mode"] = "append"
	end
	return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, job_id, step_id)
	return slurm.SUCCESS
end
