// SPDX-License-Identifier: GPL-2.0-only
#include "kfdsim_priv.h"
int kfdsim_ioctl_criu(struct kfdsim_process *p, void *data)
{
	return -EINVAL;
}
