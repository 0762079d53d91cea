/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A scratch directory per test (cmocka setup/teardown): e->dir, opened as
 * e->fd, mode 0755, removed with everything in it afterwards.
 */
#ifndef KFDCR_DIR_FIXTURE_H
#define KFDCR_DIR_FIXTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct env {
	char dir[64];
	int fd;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	strcpy(e->dir, "/tmp/kfdcr-unit-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	chmod(e->dir, 0755);
	e->fd = open(e->dir, O_RDONLY | O_DIRECTORY);
	assert_true(e->fd >= 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[128];

	close(e->fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
	return 0;
}

#endif
