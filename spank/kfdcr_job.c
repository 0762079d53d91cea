// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr_job - checkpoint folders of Slurm jobs (see kfdcr_job.h and
 * docs/design.md, section 5)
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "lib/kfdcr_crc32c.h"
#include "lib/kfdcr_io.h"
#include "kfdcr_job.h"

#define MANIFEST	"MANIFEST"
#define TASKFILE	"TASK"
#define IO_CHUNK	(1u << 20)

/* @fmt's arguments may include err->msg itself ("%s: %s", where, err->msg). */
int kfdcr_errf(struct kfdcr_err *err, const char *fmt, ...)
{
	char buf[sizeof(err->msg)];
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		memcpy(err->msg, buf, sizeof(buf));
	}
	return -1;
}

static void xclose(int fd)
{
	if (fd >= 0)
		close(fd);
}

uint64_t kfdcr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- signals and times ---- */

static const struct {
	const char *name;
	int sig;
} sig_names[] = {
	{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL },
	{ "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS }, { "FPE", SIGFPE },
	{ "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
	{ "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
	{ "PWR", SIGPWR }, { "SYS", SIGSYS },
};

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int kfdcr_sig_parse(const char *s, int *sig)
{
	long v;

	if (!s)
		return -EINVAL;
	if (!parse_long(s, 1, SIGRTMAX, &v)) {
		*sig = (int)v;
		return 0;
	}
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++) {
		if (!strcasecmp(s, sig_names[i].name)) {
			*sig = sig_names[i].sig;
			return 0;
		}
	}
	if (!strncasecmp(s, "RTMIN", 5) || !strncasecmp(s, "RTMAX", 5)) {
		bool min = !strncasecmp(s, "RTMIN", 5);
		int base = min ? SIGRTMIN : SIGRTMAX;

		v = 0;
		if (s[5] && (s[5] != (min ? '+' : '-') || parse_long(s + 6, 0, SIGRTMAX - SIGRTMIN, &v)))
			return -EINVAL;
		*sig = min ? base + (int)v : base - (int)v;
		return *sig >= SIGRTMIN && *sig <= SIGRTMAX ? 0 : -EINVAL;
	}
	return -EINVAL;
}

const char *kfdcr_sig_name(int sig, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++) {
		if (sig_names[i].sig == sig) {
			snprintf(buf, len, "%s", sig_names[i].name);
			return buf;
		}
	}
	if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		snprintf(buf, len, "RTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(buf, len, "%d", sig);
	return buf;
}

/* "a", "a:b", "a:b:c" into up to 3 numbers; returns how many. */
static int split_colons(const char *s, long v[3])
{
	char tmp[64], *save = NULL, *tok;
	int n = 0;

	if (strlen(s) >= sizeof(tmp) || !*s || s[strlen(s) - 1] == ':')
		return -1;
	snprintf(tmp, sizeof(tmp), "%s", s);
	for (tok = strtok_r(tmp, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		if (n == 3 || parse_long(tok, 0, 1000000000L, &v[n]))
			return -1;
		n++;
	}
	return n;
}

int kfdcr_interval_parse(const char *s, unsigned long *secs)
{
	long v[3], days = 0;
	const char *dash;
	size_t n;
	int k;

	if (!s || !*s)
		return -EINVAL;
	n = strlen(s);
	if (strchr("smhd", s[n - 1]) && n > 1) {
		static const long mult[] = { ['s' - 'a'] = 1, ['m' - 'a'] = 60, ['h' - 'a'] = 3600,
					     ['d' - 'a'] = 86400 };
		char num[32];
		long x;

		if (n >= sizeof(num))
			return -EINVAL;
		snprintf(num, sizeof(num), "%.*s", (int)(n - 1), s);
		if (parse_long(num, 1, 100000000L, &x))
			return -EINVAL;
		*secs = (unsigned long)x * mult[s[n - 1] - 'a'];
		return 0;
	}
	dash = strchr(s, '-');
	if (dash) {
		char d[16];

		if (dash == s || (size_t)(dash - s) >= sizeof(d))
			return -EINVAL;
		snprintf(d, sizeof(d), "%.*s", (int)(dash - s), s);
		if (parse_long(d, 0, 100000, &days))
			return -EINVAL;
		k = split_colons(dash + 1, v);
		if (k < 1)
			return -EINVAL;
		/* D-HH, D-HH:MM, D-HH:MM:SS */
		*secs = days * 86400 + v[0] * 3600 + (k > 1 ? v[1] * 60 : 0) + (k > 2 ? v[2] : 0);
		return *secs ? 0 : -EINVAL;
	}
	k = split_colons(s, v);
	if (k == 1)		/* MM */
		*secs = v[0] * 60;
	else if (k == 2)	/* MM:SS */
		*secs = v[0] * 60 + v[1];
	else if (k == 3)	/* HH:MM:SS */
		*secs = v[0] * 3600 + v[1] * 60 + v[2];
	else
		return -EINVAL;
	return *secs ? 0 : -EINVAL;
}

/* ---- site configuration ---- */

void kfdcr_site_defaults(struct kfdcr_site *site)
{
	memset(site, 0, sizeof(*site));
	snprintf(site->dir, sizeof(site->dir), "/var/lib/kfdcr");
	site->signal = SIGUSR1;
	/* an RT signal nobody sends by accident; never forwarded to tasks */
	site->request_signal = SIGRTMIN + 6;
	site->keep = 2;
	site->max_keep = 10;
	site->min_interval = 60;
	site->timeout = 600;
	snprintf(site->criu, sizeof(site->criu), "/usr/sbin/criu");
	snprintf(site->criu_plugins, sizeof(site->criu_plugins), "/usr/lib/criu");
	snprintf(site->helper, sizeof(site->helper), "%s/kfdcr/kfdcr-helper", KFDCR_LIBEXECDIR);
	snprintf(site->init, sizeof(site->init), "%s/kfdcr/kfdcr-init", KFDCR_LIBEXECDIR);
	snprintf(site->rundir, sizeof(site->rundir), "/run/kfdcr");
}

static int set_path(char *dst, size_t len, const char *key, const char *val, struct kfdcr_err *err)
{
	if (kfdcr_path_check(val, err))
		return kfdcr_errf(err, "%s=%s: %s", key, val, err->msg), -EINVAL;
	if (strlen(val) >= len)
		return kfdcr_errf(err, "%s=%s: too long", key, val), -EINVAL;
	snprintf(dst, len, "%s", val);
	return 0;
}

static int set_uint(unsigned long *dst, const char *key, const char *val, long min, long max,
		    struct kfdcr_err *err)
{
	long v;

	if (parse_long(val, min, max, &v))
		return kfdcr_errf(err, "%s=%s: not a number from %ld to %ld", key, val, min, max), -EINVAL;
	*dst = (unsigned long)v;
	return 0;
}

static int set_allow(struct kfdcr_site *site, const char *val, struct kfdcr_err *err)
{
	char tmp[KFDCR_MAX_ALLOW * PATH_MAX], *save = NULL, *tok;

	if (strlen(val) >= sizeof(tmp))
		return kfdcr_errf(err, "allow_dirs: too long"), -EINVAL;
	snprintf(tmp, sizeof(tmp), "%s", val);
	site->num_allow = 0;
	for (tok = strtok_r(tmp, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		if (site->num_allow == KFDCR_MAX_ALLOW)
			return kfdcr_errf(err, "allow_dirs: more than %d folders", KFDCR_MAX_ALLOW), -EINVAL;
		if (set_path(site->allow[site->num_allow], PATH_MAX, "allow_dirs", tok, err))
			return -EINVAL;
		site->num_allow++;
	}
	return 0;
}

int kfdcr_site_set(struct kfdcr_site *site, const char *arg, struct kfdcr_err *err)
{
	const char *eq = strchr(arg, '=');
	char key[32];
	const char *val;
	unsigned long u;

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(key))
		return kfdcr_errf(err, "'%s': expected key=value", arg), -EINVAL;
	snprintf(key, sizeof(key), "%.*s", (int)(eq - arg), arg);
	val = eq + 1;
	if (!strcmp(key, "dir"))
		return set_path(site->dir, sizeof(site->dir), key, val, err);
	if (!strcmp(key, "allow_dirs"))
		return set_allow(site, val, err);
	if (!strcmp(key, "signal") || !strcmp(key, "request_signal")) {
		int sig;

		if (kfdcr_sig_parse(val, &sig) || sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD)
			return kfdcr_errf(err, "%s=%s: not a signal that can be caught", key, val), -EINVAL;
		*(key[0] == 's' ? &site->signal : &site->request_signal) = sig;
		return 0;
	}
	if (!strcmp(key, "keep") || !strcmp(key, "max_keep")) {
		if (set_uint(&u, key, val, 1, KFDCR_MAX_KEEP, err))
			return -EINVAL;
		*(key[0] == 'k' ? &site->keep : &site->max_keep) = (unsigned int)u;
		return 0;
	}
	if (!strcmp(key, "min_interval") || !strcmp(key, "timeout")) {
		/* plain numbers are seconds here (Slurm's "MM" is for users) */
		if (set_uint(&u, key, val, 1, 100000000L, err) && kfdcr_interval_parse(val, &u))
			return kfdcr_errf(err, "%s=%s: not a time (seconds, or 10m, 1h, ...)", key, val), -EINVAL;
		*(key[0] == 'm' ? &site->min_interval : &site->timeout) = u;
		return 0;
	}
	if (!strcmp(key, "users") || !strcmp(key, "groups")) {
		char *dst = key[0] == 'u' ? site->users : site->groups;

		if (strlen(val) >= sizeof(site->users))
			return kfdcr_errf(err, "%s: too long", key), -EINVAL;
		snprintf(dst, sizeof(site->users), "%s", val);
		return 0;
	}
	if (!strcmp(key, "criu"))
		return set_path(site->criu, sizeof(site->criu), key, val, err);
	if (!strcmp(key, "criu_plugins"))
		return set_path(site->criu_plugins, sizeof(site->criu_plugins), key, val, err);
	if (!strcmp(key, "helper"))
		return set_path(site->helper, sizeof(site->helper), key, val, err);
	if (!strcmp(key, "init"))
		return set_path(site->init, sizeof(site->init), key, val, err);
	if (!strcmp(key, "rundir"))
		return set_path(site->rundir, sizeof(site->rundir), key, val, err);
	if (!strcmp(key, "log_dir"))
		return set_path(site->log_dir, sizeof(site->log_dir), key, val, err);
	return kfdcr_errf(err, "unknown key '%s' (known: dir, allow_dirs, signal, request_signal, keep, "
			  "max_keep, min_interval, timeout, users, groups, criu, criu_plugins, helper, "
			  "init, rundir, log_dir)", key), -EINVAL;
}

void kfdcr_site_finish(struct kfdcr_site *site)
{
	if (site->num_allow == 0) {
		snprintf(site->allow[0], PATH_MAX, "%s", site->dir);
		site->num_allow = 1;
	}
	if (site->keep > site->max_keep)
		site->keep = site->max_keep;
}

static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	while (p && *p) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		if (l == n && !strncmp(p, name, n))
			return true;
		p = c ? c + 1 : NULL;
	}
	return false;
}

bool kfdcr_site_user_allowed(const struct kfdcr_site *site, uid_t uid, gid_t gid)
{
	struct passwd *pw;
	gid_t groups[256];
	int ngroups = 256;

	if (!site->users[0] && !site->groups[0])
		return true;
	pw = getpwuid(uid);
	if (!pw)
		return false;
	if (site->users[0] && in_list(site->users, pw->pw_name))
		return true;
	if (!site->groups[0])
		return false;
	if (getgrouplist(pw->pw_name, gid, groups, &ngroups) < 0)
		ngroups = 0;
	for (int i = 0; i < ngroups; i++) {
		struct group *gr = getgrgid(groups[i]);

		if (gr && in_list(site->groups, gr->gr_name))
			return true;
	}
	return false;
}

/* One plugstack line: "required|optional PATH args..." naming spank_kfdcr.so? */
static int plugstack_line(char *line, struct kfdcr_site *site, const char *file, int lineno,
			  bool *found, struct kfdcr_err *err);

static int plugstack_file(const char *path, struct kfdcr_site *site, bool *found, int depth,
			  struct kfdcr_err *err)
{
	char line[4096];
	int lineno = 0, ret = 0;
	FILE *f;

	if (depth > 4)
		return kfdcr_errf(err, "%s: includes nested too deep", path), -ELOOP;
	f = fopen(path, "re");
	if (!f)
		return kfdcr_errf(err, "%s: %s", path, strerror(errno)), -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#'), *p = line;

		lineno++;
		if (hash)
			*hash = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (!strncmp(p, "include", 7) && isspace((unsigned char)p[7])) {
			glob_t g;

			p += 8;
			p[strcspn(p, " \t\r\n")] = '\0';
			while (isspace((unsigned char)*p))
				p++;
			if (glob(p, 0, NULL, &g) == 0) {
				for (size_t i = 0; !ret && i < g.gl_pathc; i++)
					ret = plugstack_file(g.gl_pathv[i], site, found, depth + 1, err);
				globfree(&g);
			}
			continue;
		}
		ret = plugstack_line(p, site, path, lineno, found, err);
	}
	fclose(f);
	return ret;
}

static int plugstack_line(char *line, struct kfdcr_site *site, const char *file, int lineno,
			  bool *found, struct kfdcr_err *err)
{
	char *save = NULL, *tok;
	int n = 0;
	bool ours = false;

	for (tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save), n++) {
		if (n == 1) {
			const char *base = strrchr(tok, '/');

			ours = !strcmp(base ? base + 1 : tok, "spank_kfdcr.so");
			if (ours)
				*found = true;
		} else if (n > 1 && ours && kfdcr_site_set(site, tok, err)) {
			return kfdcr_errf(err, "%s:%d: %s", file, lineno, err->msg), -EINVAL;
		}
	}
	return 0;
}

int kfdcr_site_from_plugstack(const char *path, struct kfdcr_site *site, struct kfdcr_err *err)
{
	bool found = false;
	int ret;

	ret = plugstack_file(path, site, &found, 0, err);
	if (ret)
		return ret;
	if (!found)
		return kfdcr_errf(err, "%s: no line names spank_kfdcr.so", path), -ENOENT;
	kfdcr_site_finish(site);
	return 0;
}

/* ---- user options ---- */

static int opt_dir(struct kfdcr_opts *o, const struct kfdcr_site *site, const char *val,
		   struct kfdcr_err *err)
{
	struct kfdcr_err e2;

	if (!val || kfdcr_path_check(val, &e2))
		return kfdcr_errf(err, "--checkpoint-dir: '%s': %s", val ? val : "",
				  val ? e2.msg : "a folder is needed"), -EINVAL;
	for (unsigned int i = 0; i < site->num_allow; i++) {
		if (kfdcr_path_within(val, site->allow[i])) {
			snprintf(o->dir, sizeof(o->dir), "%s", val);
			return 0;
		}
	}
	return kfdcr_errf(err, "--checkpoint-dir: '%s' is not inside the folders this site allows (%s%s%s)",
			  val, site->allow[0], site->num_allow > 1 ? ", " : "",
			  site->num_allow > 1 ? site->allow[1] : ""), -EINVAL;
}

int kfdcr_opt_set(struct kfdcr_opts *o, const struct kfdcr_site *site, const char *name,
		  const char *val, struct kfdcr_err *err)
{
	unsigned long u;
	long l;

	if (!strcmp(name, "checkpoint")) {
		o->enabled = true;
		if (!val || !*val)
			return 0;
		if (kfdcr_interval_parse(val, &u))
			return kfdcr_errf(err, "--checkpoint: '%s' is not an interval (minutes, MM:SS, HH:MM:SS, "
					  "D-HH[:MM[:SS]], or a number with s, m, h or d)", val), -EINVAL;
		if (u < site->min_interval)
			return kfdcr_errf(err, "--checkpoint: interval '%s' is shorter than this site's minimum "
					  "of %lu s", val, site->min_interval), -EINVAL;
		o->interval = u;
		return 0;
	}
	if (!strcmp(name, "checkpoint-dir"))
		return opt_dir(o, site, val, err);
	if (!strcmp(name, "checkpoint-keep")) {
		if (parse_long(val, 1, site->max_keep, &l))
			return kfdcr_errf(err, "--checkpoint-keep: '%s' is not a number from 1 to %u",
					  val ? val : "", site->max_keep), -EINVAL;
		o->keep = (unsigned int)l;
		return 0;
	}
	if (!strcmp(name, "checkpoint-signal")) {
		int sig;

		if (kfdcr_sig_parse(val, &sig) || sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD ||
		    sig == SIGTERM || sig == SIGCONT || sig == site->request_signal)
			return kfdcr_errf(err, "--checkpoint-signal: '%s' is not a signal kfdcr can use "
					  "(e.g. USR1, USR2, RTMIN+3; not TERM, CONT, KILL, STOP, CHLD)",
					  val ? val : ""), -EINVAL;
		o->signal = sig;
		return 0;
	}
	if (!strcmp(name, "checkpoint-mismatch")) {
		if (val && !strcmp(val, "fail"))
			o->mismatch = KFDCR_MISMATCH_FAIL;
		else if (val && !strcmp(val, "run"))
			o->mismatch = KFDCR_MISMATCH_RUN;
		else
			return kfdcr_errf(err, "--checkpoint-mismatch: '%s' is neither 'fail' nor 'run'",
					  val ? val : ""), -EINVAL;
		return 0;
	}
	if (!strcmp(name, "checkpoint-verbose")) {
		o->verbose = true;
		return 0;
	}
	return kfdcr_errf(err, "unknown option --%s", name), -EINVAL;
}

/* ---- paths ---- */

int kfdcr_path_check(const char *path, struct kfdcr_err *err)
{
	const char *p;

	if (!path || path[0] != '/')
		return kfdcr_errf(err, "not an absolute path"), -EINVAL;
	if (strlen(path) >= PATH_MAX - 64)
		return kfdcr_errf(err, "too long"), -EINVAL;
	for (p = path; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return kfdcr_errf(err, "control character in the path"), -EINVAL;
	}
	if (!strcmp(path, "/"))
		return 0;
	for (p = path + 1;;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);

		if (n == 0)
			return kfdcr_errf(err, "empty component (\"//\" or a trailing \"/\")"), -EINVAL;
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return kfdcr_errf(err, "\".\" or \"..\" component"), -EINVAL;
		if (n > NAME_MAX)
			return kfdcr_errf(err, "component longer than %d bytes", NAME_MAX), -EINVAL;
		if (!s)
			return 0;
		p = s + 1;
	}
}

bool kfdcr_path_within(const char *path, const char *root)
{
	size_t n = strlen(root);

	if (kfdcr_path_check(path, NULL) || kfdcr_path_check(root, NULL))
		return false;
	if (!strcmp(root, "/"))
		return true;
	return !strncmp(path, root, n) && (path[n] == '\0' || path[n] == '/');
}

int kfdcr_open_dir(const char *path, struct kfdcr_err *err)
{
	char comp[NAME_MAX + 1];
	const char *p;
	int fd, next;

	if (kfdcr_path_check(path, err))
		return -EINVAL;
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kfdcr_errf(err, "/: %s", strerror(errno)), -errno;
	for (p = path + 1; *p;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);

		snprintf(comp, sizeof(comp), "%.*s", (int)n, p);
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			int e = errno;

			close(fd);
			if (e == ELOOP || e == ENOTDIR)
				return kfdcr_errf(err, "%s: component '%s' is a symlink or not a folder",
						  path, comp), -e;
			return kfdcr_errf(err, "%s: %s: %s", path, comp, strerror(e)), -e;
		}
		close(fd);
		fd = next;
		p = s ? s + 1 : p + n;
	}
	return fd;
}

bool kfdcr_name_ok(const char *name)
{
	const char *p = name;

	if (!*name || *name == '/' || strlen(name) >= 256)
		return false;
	while (*p) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++) {
			if (!isalnum((unsigned char)p[i]) && !strchr("._:+-", p[i]))
				return false;
		}
		p += n;
		if (*p == '/')
			p++;
		if (s && !*p)
			return false;
	}
	return true;
}

/* ---- files ---- */

int kfdcr_write_atomic(int dirfd, const char *name, const void *buf, size_t len,
		       struct kfdcr_err *err)
{
	char tmp[300];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	unlinkat(dirfd, tmp, 0);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", tmp, strerror(errno)), -errno;
	ret = kfdcr_write_all(fd, buf, len);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && renameat(dirfd, tmp, dirfd, name))
		ret = -errno;
	if (ret) {
		unlinkat(dirfd, tmp, 0);
		return kfdcr_errf(err, "%s: %s", name, strerror(-ret)), ret;
	}
	fsync(dirfd);
	return 0;
}

int kfdcr_read_small(int dirfd, const char *name, char **buf, size_t max, struct kfdcr_err *err)
{
	struct stat st;
	char *b;
	size_t got = 0;
	int fd;

	*buf = NULL;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", name, strerror(errno)), -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		close(fd);
		return kfdcr_errf(err, "%s: not a regular file of at most %zu bytes", name, max), -EINVAL;
	}
	b = malloc(st.st_size + 1);
	if (!b) {
		close(fd);
		return kfdcr_errf(err, "out of memory"), -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	b[got] = '\0';
	*buf = b;
	return 0;
}

int kfdcr_append_line(int dirfd, const char *name, const char *line, struct kfdcr_err *err)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644);
	int ret;

	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", name, strerror(errno)), -errno;
	ret = kfdcr_write_all(fd, line, strlen(line));
	if (!ret)
		ret = kfdcr_write_all(fd, "\n", 1);
	fsync(fd);
	close(fd);
	if (ret)
		return kfdcr_errf(err, "%s: %s", name, strerror(-ret)), ret;
	return 0;
}

int kfdcr_rmtree(int dirfd, const char *name)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	if (!unlinkat(dirfd, name, 0) || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (kfdcr_rmtree(fd, de->d_name))
			ret = -EIO;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) && errno != ENOENT)
		ret = -errno;
	return ret;
}

static int file_crc(int dirfd, const char *name, uint64_t *size, uint32_t *crc, bool sync,
		    struct kfdcr_err *err);

int kfdcr_file_crc(int dirfd, const char *name, uint64_t *size, uint32_t *crc,
		   struct kfdcr_err *err)
{
	return file_crc(dirfd, name, size, crc, false, err);
}

/* With @sync (the node that wrote the file), also make its data durable. */
static int file_crc(int dirfd, const char *name, uint64_t *size, uint32_t *crc, bool sync,
		    struct kfdcr_err *err)
{
	struct stat st;
	uint32_t c = 0;
	uint64_t total = 0;
	char *buf;
	int fd, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", name, strerror(errno)), -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return kfdcr_errf(err, "%s: not a regular file", name), -EINVAL;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	buf = malloc(IO_CHUNK);
	if (!buf) {
		close(fd);
		return kfdcr_errf(err, "out of memory"), -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf, IO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			kfdcr_errf(err, "%s: read: %s", name, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		c = kfdcr_crc32c(c, buf, n);
		total += n;
	}
	free(buf);
	if (!ret && sync && fsync(fd)) {
		ret = -errno;
		kfdcr_errf(err, "%s: fsync: %s", name, strerror(errno));
	}
	close(fd);
	*size = total;
	*crc = c;
	return ret;
}

/*
 * POSIX ACL in its xattr form (linux/posix_acl_xattr.h): a version word
 * and {tag, perm, id} entries in tag order.
 */
struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};

int kfdcr_grant_read(int dirfd, uid_t uid, gid_t gid, struct kfdcr_err *err)
{
	struct {
		uint32_t version;
		struct acl_ent e[5];
	} __attribute__((packed)) acl = {
		.version = 2,
		.e = {
			{ 0x01, 7, UINT32_MAX },	/* ACL_USER_OBJ rwx */
			{ 0x02, 5, 0 },			/* ACL_USER uid r-x */
			{ 0x04, 0, UINT32_MAX },	/* ACL_GROUP_OBJ --- */
			{ 0x10, 5, UINT32_MAX },	/* ACL_MASK r-x */
			{ 0x20, 0, UINT32_MAX },	/* ACL_OTHER --- */
		},
	};

	acl.e[1].id = uid;
	if (uid == 0 || !fsetxattr(dirfd, "system.posix_acl_access", &acl, sizeof(acl), 0))
		return fchmod(dirfd, uid == 0 ? 0700 : 0750) ? -errno : 0;
	/* no ACLs here: the job's group may read, nobody else */
	if (fchown(dirfd, 0, gid) || fchmod(dirfd, 0750))
		return kfdcr_errf(err, "cannot give uid %u read access: %s", uid, strerror(errno)), -errno;
	return 0;
}

int kfdcr_jobdir_open(int rootfd, uint32_t jobid, uid_t uid, gid_t gid, bool create,
		      struct kfdcr_err *err)
{
	bool created = false;
	char name[16];
	struct stat st;
	int fd, ret;

	snprintf(name, sizeof(name), "%u", jobid);
	if (create && mkdirat(rootfd, name, 0700) == 0)
		created = true;
	else if (create && errno != EEXIST)
		return kfdcr_errf(err, "cannot create the job folder %s: %s", name, strerror(errno)), -errno;
	fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ELOOP || ret == -ENOTDIR)
			return kfdcr_errf(err, "job folder %s is a symlink or not a folder: refused", name), ret;
		return kfdcr_errf(err, "job folder %s: %s", name, strerror(-ret)), ret;
	}
	if (fstat(fd, &st) || st.st_uid != 0) {
		close(fd);
		return kfdcr_errf(err, "job folder %s is not owned by root (uid %u): refused, kfdcr "
				  "creates it itself", name, (unsigned int)st.st_uid), -EPERM;
	}
	/*
	 * Only a folder made just now is granted here: an existing one may be
	 * another job's (job ids wrap, clusters share file systems), and is
	 * granted by the caller once its JOB record names this job and user.
	 */
	if (created) {
		ret = kfdcr_grant_read(fd, uid, gid, err);
		if (ret) {
			close(fd);
			return ret;
		}
	}
	return fd;
}

/* ---- key/value records ---- */

const char *kfdcr_kv_get(const char *text, const char *key, char *buf, size_t len)
{
	size_t n = strlen(key);
	const char *p = text;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t l = eol ? (size_t)(eol - p) : strlen(p);

		if (l >= n && !strncmp(p, key, n) && (l == n || p[n] == ' ')) {
			const char *v = l == n ? p + n : p + n + 1;
			size_t vl = l == n ? 0 : l - n - 1;

			snprintf(buf, len, "%.*s", (int)vl, v);
			return buf;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* ---- TASK ---- */

const char *kfdcr_task_state_name(enum kfdcr_task_state s)
{
	static const char *const names[] = { "image", "failed", "exited", "unstarted" };

	return (unsigned int)s < 4 ? names[s] : "failed";
}

static int parse_state(const char *s, enum kfdcr_task_state *st)
{
	if (!strcmp(s, "image"))
		*st = KFDCR_TASK_IMAGE;
	else if (!strcmp(s, "exited"))
		*st = KFDCR_TASK_EXITED;
	else if (!strcmp(s, "failed"))
		*st = KFDCR_TASK_FAILED;
	else if (!strcmp(s, "unstarted"))
		*st = KFDCR_TASK_UNSTARTED;
	else
		return -EINVAL;
	return 0;
}

static void step_str(long step, char *buf, size_t len)
{
	if (step == KFDCR_STEP_BATCH)
		snprintf(buf, len, "batch");
	else
		snprintf(buf, len, "%ld", step);
}

static int step_parse(const char *s, long *step)
{
	if (!strcmp(s, "batch")) {
		*step = KFDCR_STEP_BATCH;
		return 0;
	}
	return parse_long(s, 0, 0xfffffff0L, step);
}

void kfdcr_argv_hex(char *const argv[], int argc, char *out, size_t len)
{
	size_t at = 0;

	out[0] = '\0';
	for (int i = 0; i < argc && argv[i]; i++) {
		for (const char *p = argv[i];; p++) {
			if (at + 3 >= len)
				return;
			at += snprintf(out + at, len - at, "%02x", (unsigned char)*p);
			if (!*p)
				break;
		}
	}
}

int kfdcr_argv0_from_hex(const char *hex, char *out, size_t len)
{
	size_t at = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		unsigned int c;

		if (sscanf(hex, "%2x", &c) != 1 || at + 1 >= len)
			return -EINVAL;
		if (!c)
			break;
		out[at++] = (char)c;
	}
	out[at] = '\0';
	return at ? 0 : -EINVAL;
}

static int list_files(int dirfd, const char *skip, struct kfdcr_file_ent **out, unsigned int *n,
		      struct kfdcr_err *err);

int kfdcr_task_write(int dirfd, struct kfdcr_task_rec *t, struct kfdcr_err *err)
{
	char step[16], *buf = NULL;
	size_t len = 0;
	FILE *f;
	int ret;

	free(t->files);
	t->files = NULL;
	t->nfiles = 0;
	if (t->state == KFDCR_TASK_IMAGE || t->state == KFDCR_TASK_FAILED) {
		/* every file durable (list_files syncs each), then their names */
		ret = list_files(dirfd, TASKFILE, &t->files, &t->nfiles, err);
		if (!ret && fsync(dirfd)) {
			ret = -errno;
			kfdcr_errf(err, "image folder: fsync: %s", strerror(errno));
		}
		if (ret)
			return ret;
	}
	t->bytes = 0;
	for (unsigned int i = 0; i < t->nfiles; i++)
		t->bytes += t->files[i].size;
	f = open_memstream(&buf, &len);
	if (!f)
		return kfdcr_errf(err, "out of memory"), -ENOMEM;
	step_str(t->step, step, sizeof(step));
	fprintf(f, "kfdcr-task 1\njob %u\nstep %s\nslurm_step %u\ntask %u\nlocal %u\nntasks %u\n"
		"nnodes %u\nnode %s\nstate %s\n", t->job, step, t->slurm_step, t->task, t->local,
		t->ntasks, t->nnodes, t->node, kfdcr_task_state_name(t->state));
	if (t->state == KFDCR_TASK_FAILED)
		fprintf(f, "error %s\n", t->error);
	if (t->state == KFDCR_TASK_EXITED)
		fprintf(f, "exit %d\n", t->wstatus);
	fprintf(f, "argv %s\ngpus %u\ngpu_ids %s\nrender %s\n", t->argv_hex, t->ngpus,
		t->gpu_ids[0] ? t->gpu_ids : "-", t->render[0] ? t->render : "-");
	for (int i = 0; i < 3; i++)
		fprintf(f, "stdio%d %s\n", i, t->stdio[i][0] ? t->stdio[i] : "-");
	fprintf(f, "script %s\nscript_pos %lld\n", t->script[0] ? t->script : "-", t->script_pos);
	fprintf(f, "dump_ms %llu\nbytes %llu\n", (unsigned long long)t->dump_ms,
		(unsigned long long)t->bytes);
	for (unsigned int i = 0; i < t->nfiles; i++)
		fprintf(f, "file %s %llu %08x\n", t->files[i].name,
			(unsigned long long)t->files[i].size, t->files[i].crc);
	fclose(f);
	ret = kfdcr_write_atomic(dirfd, TASKFILE, buf, len, err);
	free(buf);
	return ret;
}

static int get_u32(const char *text, const char *key, uint32_t *v)
{
	char buf[64];
	long l;

	if (!kfdcr_kv_get(text, key, buf, sizeof(buf)) || parse_long(buf, 0, UINT32_MAX, &l))
		return -EINVAL;
	*v = (uint32_t)l;
	return 0;
}

static void get_str(const char *text, const char *key, char *out, size_t len)
{
	if (!kfdcr_kv_get(text, key, out, len) || !strcmp(out, "-"))
		out[0] = '\0';
}

static int add_file(struct kfdcr_file_ent **files, unsigned int *n, const char *name,
		    uint64_t size, uint32_t crc)
{
	struct kfdcr_file_ent *f;

	if (strlen(name) >= sizeof(f->name))
		return -ENAMETOOLONG;
	if ((*n & 63) == 0) {
		f = realloc(*files, (*n + 64) * sizeof(*f));
		if (!f)
			return -ENOMEM;
		*files = f;
	}
	f = &(*files)[(*n)++];
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->size = size;
	f->crc = crc;
	return 0;
}

/* "file NAME SIZE CRC" lines of @text. */
static int parse_files(const char *text, const char *prefix, struct kfdcr_file_ent **files,
		       unsigned int *n, struct kfdcr_err *err)
{
	const char *p = text;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		char name[256], pname[600];
		unsigned long long size;
		unsigned int crc;

		if (!strncmp(p, "file ", 5)) {
			if (sscanf(p, "file %255s %llu %x", name, &size, &crc) != 3 || !kfdcr_name_ok(name))
				return kfdcr_errf(err, "bad file line: %.60s", p), -EINVAL;
			snprintf(pname, sizeof(pname), "%s%s", prefix, name);
			if (add_file(files, n, pname, size, crc))
				return kfdcr_errf(err, "bad file name %s", pname), -EINVAL;
		}
		p = eol ? eol + 1 : NULL;
	}
	return 0;
}

int kfdcr_task_read(int dirfd, struct kfdcr_task_rec *t, struct kfdcr_err *err)
{
	char *text, buf[64];
	int ret;

	memset(t, 0, sizeof(*t));
	ret = kfdcr_read_small(dirfd, TASKFILE, &text, 16 << 20, err);
	if (ret)
		return ret;
	ret = -EINVAL;
	if (strncmp(text, "kfdcr-task 1\n", 13)) {
		kfdcr_errf(err, "TASK: not a kfdcr-task 1 record");
		goto out;
	}
	if (get_u32(text, "job", &t->job) || get_u32(text, "task", &t->task) ||
	    get_u32(text, "ntasks", &t->ntasks) || !kfdcr_kv_get(text, "step", buf, sizeof(buf)) ||
	    step_parse(buf, &t->step) || !kfdcr_kv_get(text, "state", buf, sizeof(buf)) ||
	    parse_state(buf, &t->state)) {
		kfdcr_errf(err, "TASK: job, step, task, ntasks or state missing or bad");
		goto out;
	}
	get_u32(text, "slurm_step", &t->slurm_step);
	get_u32(text, "local", &t->local);
	get_u32(text, "nnodes", &t->nnodes);
	get_u32(text, "gpus", &t->ngpus);
	if (t->state == KFDCR_TASK_EXITED) {
		uint32_t w;

		if (get_u32(text, "exit", &w)) {
			kfdcr_errf(err, "TASK: state exited without exit status");
			goto out;
		}
		t->wstatus = (int)w;
	}
	get_str(text, "node", t->node, sizeof(t->node));
	get_str(text, "error", t->error, sizeof(t->error));
	get_str(text, "argv", t->argv_hex, sizeof(t->argv_hex));
	get_str(text, "gpu_ids", t->gpu_ids, sizeof(t->gpu_ids));
	get_str(text, "render", t->render, sizeof(t->render));
	for (int i = 0; i < 3; i++) {
		char key[8];

		snprintf(key, sizeof(key), "stdio%d", i);
		get_str(text, key, t->stdio[i], sizeof(t->stdio[i]));
	}
	get_str(text, "script", t->script, sizeof(t->script));
	t->script_pos = kfdcr_kv_get(text, "script_pos", buf, sizeof(buf)) ? strtoll(buf, NULL, 10) : -1;
	if (kfdcr_kv_get(text, "dump_ms", buf, sizeof(buf)))
		t->dump_ms = strtoull(buf, NULL, 10);
	if (kfdcr_kv_get(text, "bytes", buf, sizeof(buf)))
		t->bytes = strtoull(buf, NULL, 10);
	ret = parse_files(text, "", &t->files, &t->nfiles, err);
out:
	free(text);
	return ret;
}

void kfdcr_task_free(struct kfdcr_task_rec *t)
{
	free(t->files);
	t->files = NULL;
	t->nfiles = 0;
}

static int cmp_files(const void *a, const void *b)
{
	return strcmp(((const struct kfdcr_file_ent *)a)->name, ((const struct kfdcr_file_ent *)b)->name);
}

/* Every regular file of @dirfd but @skip, with size and CRC, sorted by name. */
static int list_files(int dirfd, const char *skip, struct kfdcr_file_ent **out, unsigned int *n,
		      struct kfdcr_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	*out = NULL;
	*n = 0;
	fd = dup(dirfd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		xclose(fd);
		return kfdcr_errf(err, "cannot list the image folder: %s", strerror(errno)), -errno;
	}
	rewinddir(d);
	while (!ret && (de = readdir(d))) {
		uint64_t size;
		uint32_t crc;

		if (de->d_name[0] == '.' || !strcmp(de->d_name, skip))
			continue;
		if (!kfdcr_name_ok(de->d_name)) {
			ret = kfdcr_errf(err, "unexpected file name '%s' in the image folder", de->d_name);
			ret = -EINVAL;
			break;
		}
		/* the job folder's ACL decides who reads: criu writes 0600 */
		fchmodat(dirfd, de->d_name, 0644, 0);
		ret = file_crc(dirfd, de->d_name, &size, &crc, true, err);
		if (!ret && add_file(out, n, de->d_name, size, crc)) {
			kfdcr_errf(err, "out of memory");
			ret = -ENOMEM;
		}
	}
	closedir(d);
	if (!ret && *n)
		qsort(*out, *n, sizeof(**out), cmp_files);
	return ret;
}

/* ---- MANIFEST ---- */

void kfdcr_manifest_free(struct kfdcr_manifest *m)
{
	free(m->tasks);
	free(m->files);
	m->tasks = NULL;
	m->files = NULL;
	m->ntasks = m->nfiles = 0;
}

static int add_mtask(struct kfdcr_manifest *m, const struct kfdcr_mtask *t)
{
	if ((m->ntasks & 63) == 0) {
		struct kfdcr_mtask *n = realloc(m->tasks, (m->ntasks + 64) * sizeof(*n));

		if (!n)
			return -ENOMEM;
		m->tasks = n;
	}
	m->tasks[m->ntasks++] = *t;
	return 0;
}

static int cmp_mtask(const void *a, const void *b)
{
	const struct kfdcr_mtask *x = a, *y = b;

	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return x->task < y->task ? -1 : x->task > y->task;
}

/* step.<S>/task.<T> of @ckptfd: TASK record into the manifest. */
static int collect_task(int ckptfd, const char *stepname, const char *taskname,
			struct kfdcr_manifest *m, struct kfdcr_err *err)
{
	struct kfdcr_task_rec t;
	struct kfdcr_mtask mt = { 0 };
	char rel[600];
	uint64_t size;
	uint32_t crc;
	int fd, ret;

	snprintf(rel, sizeof(rel), "%s/%s", stepname, taskname);
	fd = openat(ckptfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", rel, strerror(errno)), -errno;
	ret = kfdcr_task_read(fd, &t, err);
	if (ret) {
		kfdcr_errf(err, "%s: %s", rel, err->msg);
		goto out;
	}
	if (t.state == KFDCR_TASK_FAILED) {
		ret = kfdcr_errf(err, "%s: failed on %s: %s", rel, t.node, t.error);
		ret = -EIO;
		goto out_task;
	}
	mt.step = t.step;
	mt.task = t.task;
	mt.state = t.state;
	mt.wstatus = t.wstatus;
	mt.ntasks = t.ntasks;
	snprintf(mt.node, sizeof(mt.node), "%s", t.node[0] ? t.node : "-");
	snprintf(rel, sizeof(rel), "%s/%s/", stepname, taskname);
	for (unsigned int i = 0; !ret && i < t.nfiles; i++) {
		char name[600];

		snprintf(name, sizeof(name), "%.300s%.255s", rel, t.files[i].name);
		ret = add_file(&m->files, &m->nfiles, name, t.files[i].size, t.files[i].crc);
	}
	if (!ret)
		ret = kfdcr_file_crc(fd, TASKFILE, &size, &crc, err);
	if (!ret) {
		char name[600];

		snprintf(name, sizeof(name), "%.300s%s", rel, TASKFILE);
		ret = add_file(&m->files, &m->nfiles, name, size, crc);
	}
	if (!ret)
		ret = add_mtask(m, &mt);
	if (ret && !err->msg[0])
		kfdcr_errf(err, "out of memory");
out_task:
	kfdcr_task_free(&t);
out:
	close(fd);
	return ret;
}

static int collect_dir(int ckptfd, const char *name, struct kfdcr_manifest *m, struct kfdcr_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	fd = openat(ckptfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		xclose(fd);
		return kfdcr_errf(err, "%s: %s", name, strerror(errno)), -errno;
	}
	while (!ret && (de = readdir(d))) {
		if (strncmp(de->d_name, "task.", 5))
			continue;
		ret = collect_task(ckptfd, name, de->d_name, m, err);
	}
	closedir(d);
	return ret;
}

int kfdcr_manifest_collect(int ckptfd, struct kfdcr_manifest *m, struct kfdcr_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	fd = dup(ckptfd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		xclose(fd);
		return kfdcr_errf(err, "cannot list the checkpoint: %s", strerror(errno)), -errno;
	}
	rewinddir(d);
	while (!ret && (de = readdir(d))) {
		if (strncmp(de->d_name, "step.", 5))
			continue;
		ret = collect_dir(ckptfd, de->d_name, m, err);
	}
	closedir(d);
	if (ret)
		return ret;
	if (m->ntasks)
		qsort(m->tasks, m->ntasks, sizeof(*m->tasks), cmp_mtask);
	if (m->nfiles)
		qsort(m->files, m->nfiles, sizeof(*m->files), cmp_files);
	m->bytes = 0;
	for (unsigned int i = 0; i < m->nfiles; i++)
		m->bytes += m->files[i].size;
	return 0;
}

int kfdcr_manifest_write(int ckptfd, const struct kfdcr_manifest *m, struct kfdcr_err *err)
{
	char *buf = NULL, step[16];
	size_t len = 0;
	FILE *f;
	int ret;

	f = open_memstream(&buf, &len);
	if (!f)
		return kfdcr_errf(err, "out of memory"), -ENOMEM;
	fprintf(f, "kfdcr-manifest 1\njob %u\nuser %u %s\ngroup %u\ncluster %s\nseq %u\nrun %u\n"
		"base %u\nsteps_launched %u\nop %s\ncreated %llu\nduration_ms %llu\nbatch %s\n",
		m->job, m->uid, m->user[0] ? m->user : "-", m->gid, m->cluster[0] ? m->cluster : "-",
		m->seq, m->run, m->base, m->steps_launched, m->op, (unsigned long long)m->created,
		(unsigned long long)m->duration_ms, m->batch);
	for (unsigned int i = 0; i < m->ntasks; i++) {
		const struct kfdcr_mtask *t = &m->tasks[i];

		step_str(t->step, step, sizeof(step));
		if (t->state == KFDCR_TASK_EXITED)
			fprintf(f, "task %s %u exited %d %s %u\n", step, t->task, t->wstatus, t->node, t->ntasks);
		else
			fprintf(f, "task %s %u %s - %s %u\n", step, t->task, kfdcr_task_state_name(t->state),
				t->node, t->ntasks);
	}
	for (unsigned int i = 0; i < m->nfiles; i++)
		fprintf(f, "file %s %llu %08x\n", m->files[i].name, (unsigned long long)m->files[i].size,
			m->files[i].crc);
	fflush(f);
	fprintf(f, "end %08x\n", kfdcr_crc32c(0, buf, len));
	fclose(f);
	ret = kfdcr_write_atomic(ckptfd, MANIFEST, buf, len, err);
	free(buf);
	return ret;
}

static int parse_task_line(const char *p, struct kfdcr_manifest *m)
{
	char step[16], state[16], ws[16], node[64];
	struct kfdcr_mtask t = { 0 };
	unsigned int task, ntasks;
	long w;

	if (sscanf(p, "task %15s %u %15s %15s %63s %u", step, &task, state, ws, node, &ntasks) != 6 ||
	    step_parse(step, &t.step) || parse_state(state, &t.state) || t.state == KFDCR_TASK_FAILED)
		return -EINVAL;
	if (t.state == KFDCR_TASK_EXITED) {
		if (parse_long(ws, 0, 0xffff, &w))
			return -EINVAL;
		t.wstatus = (int)w;
	}
	t.task = task;
	t.ntasks = ntasks;
	snprintf(t.node, sizeof(t.node), "%s", node);
	return add_mtask(m, &t);
}

int kfdcr_manifest_read(int ckptfd, struct kfdcr_manifest *m, struct kfdcr_err *err)
{
	char *text, buf[128], *end;
	unsigned int crc;
	int ret = -EINVAL;

	memset(m, 0, sizeof(*m));
	ret = kfdcr_read_small(ckptfd, MANIFEST, &text, 64 << 20, err);
	if (ret)
		return ret;
	ret = -EINVAL;
	end = strstr(text, "\nend ");
	if (strncmp(text, "kfdcr-manifest 1\n", 17) || !end || sscanf(end + 5, "%x", &crc) != 1) {
		kfdcr_errf(err, "MANIFEST: not a kfdcr-manifest 1 file, or it has no end line (truncated?)");
		goto out;
	}
	if (kfdcr_crc32c(0, text, end + 1 - text) != crc) {
		kfdcr_errf(err, "MANIFEST: checksum mismatch (the file was altered or damaged)");
		goto out;
	}
	end[1] = '\0';
	if (get_u32(text, "job", &m->job) || get_u32(text, "group", &m->gid) ||
	    get_u32(text, "seq", &m->seq) || get_u32(text, "run", &m->run) ||
	    !kfdcr_kv_get(text, "user", buf, sizeof(buf)) ||
	    sscanf(buf, "%u %63s", &m->uid, m->user) != 2) {
		kfdcr_errf(err, "MANIFEST: job, user, group, seq or run missing");
		goto out;
	}
	get_u32(text, "base", &m->base);
	get_u32(text, "steps_launched", &m->steps_launched);
	get_str(text, "cluster", m->cluster, sizeof(m->cluster));
	get_str(text, "op", m->op, sizeof(m->op));
	get_str(text, "batch", m->batch, sizeof(m->batch));
	if (kfdcr_kv_get(text, "created", buf, sizeof(buf)))
		m->created = strtoull(buf, NULL, 10);
	if (kfdcr_kv_get(text, "duration_ms", buf, sizeof(buf)))
		m->duration_ms = strtoull(buf, NULL, 10);
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');

		if (!strncmp(p, "task ", 5) && parse_task_line(p, m)) {
			kfdcr_errf(err, "MANIFEST: bad task line: %.60s", p);
			goto out;
		}
		p = eol ? eol + 1 : NULL;
	}
	if (parse_files(text, "", &m->files, &m->nfiles, err))
		goto out;
	for (unsigned int i = 0; i < m->nfiles; i++)
		m->bytes += m->files[i].size;
	ret = 0;
out:
	free(text);
	if (ret)
		kfdcr_manifest_free(m);
	return ret;
}

void kfdcr_manifest_nodes(const struct kfdcr_manifest *m, char *out, size_t len)
{
	size_t at = 0;

	out[0] = '\0';
	for (unsigned int i = 0; i < m->ntasks; i++) {
		const char *n = m->tasks[i].node;
		bool seen = false;

		if (m->tasks[i].state != KFDCR_TASK_IMAGE || !strcmp(n, "-"))
			continue;
		for (unsigned int k = 0; k < i && !seen; k++)
			seen = m->tasks[k].state == KFDCR_TASK_IMAGE && !strcmp(m->tasks[k].node, n);
		if (!seen && at < len)
			at += snprintf(out + at, len - at, "%s%s", at ? "," : "", n);
	}
}

const struct kfdcr_mtask *kfdcr_manifest_task(const struct kfdcr_manifest *m, long step, uint32_t task)
{
	for (unsigned int i = 0; i < m->ntasks; i++)
		if (m->tasks[i].step == step && m->tasks[i].task == task)
			return &m->tasks[i];
	return NULL;
}

/* Open "a/b/c" below @dirfd without following symlinks; regular file only. */
static int open_rel(int dirfd, const char *name)
{
	char comp[256];
	const char *p = name;
	int fd = dup(dirfd);

	while (fd >= 0) {
		const char *s = strchr(p, '/');
		int next;

		if (!s)
			break;
		snprintf(comp, sizeof(comp), "%.*s", (int)(s - p), p);
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		p = s + 1;
	}
	if (fd < 0)
		return -errno;
	dirfd = fd;
	fd = openat(dirfd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	close(dirfd);
	return fd < 0 ? -errno : fd;
}

static int verify_file(int ckptfd, const struct kfdcr_file_ent *e, char *buf, uint64_t *done,
		       struct kfdcr_err *err)
{
	struct stat st;
	uint64_t total = 0;
	uint32_t crc = 0;
	int fd = open_rel(ckptfd, e->name);

	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", e->name, strerror(-fd)), fd;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0) {
		close(fd);
		return kfdcr_errf(err, "%s: not a regular file owned by root", e->name), -EPERM;
	}
	if ((uint64_t)st.st_size != e->size) {
		close(fd);
		return kfdcr_errf(err, "%s: %llu bytes, the manifest says %llu (%s)", e->name,
				  (unsigned long long)st.st_size, (unsigned long long)e->size,
				  (uint64_t)st.st_size < e->size ? "truncated" : "grew"), -EBADMSG;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t n = read(fd, buf, IO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return kfdcr_errf(err, "%s: read: %s", e->name, strerror(errno)), -EIO;
		}
		if (n == 0)
			break;
		crc = kfdcr_crc32c(crc, buf, n);
		total += n;
		*done += n;
	}
	close(fd);
	if (total != e->size)
		return kfdcr_errf(err, "%s: read %llu bytes, the manifest says %llu", e->name,
				  (unsigned long long)total, (unsigned long long)e->size), -EBADMSG;
	if (crc != e->crc)
		return kfdcr_errf(err, "%s: CRC-32C %08x, the manifest says %08x (the file is damaged)",
				  e->name, crc, e->crc), -EBADMSG;
	return 0;
}

int kfdcr_manifest_verify(int ckptfd, const struct kfdcr_manifest *m, uint32_t job, uid_t uid,
			  kfdcr_progress_fn progress, void *arg, struct kfdcr_err *err)
{
	uint64_t done = 0;
	char *buf;
	int ret = 0;

	if (job && m->job != job)
		return kfdcr_errf(err, "MANIFEST is for job %u, not %u: refused", m->job, job), -EPERM;
	if (uid != (uid_t)-1 && m->uid != uid)
		return kfdcr_errf(err, "MANIFEST is for uid %u, not %u: refused", m->uid, uid), -EPERM;
	buf = malloc(IO_CHUNK);
	if (!buf)
		return kfdcr_errf(err, "out of memory"), -ENOMEM;
	for (unsigned int i = 0; !ret && i < m->nfiles; i++) {
		if (!kfdcr_name_ok(m->files[i].name)) {
			ret = kfdcr_errf(err, "MANIFEST names a bad path '%s'", m->files[i].name);
			ret = -EINVAL;
			break;
		}
		ret = verify_file(ckptfd, &m->files[i], buf, &done, err);
		if (progress)
			progress(arg, done, m->bytes, i + 1, m->nfiles);
	}
	free(buf);
	return ret;
}

/* ---- the job folder ---- */

int kfdcr_latest_read(int jobfd, unsigned int *seq)
{
	char *text;
	long v;
	int ret = kfdcr_read_small(jobfd, "LATEST", &text, 64, NULL);

	if (ret)
		return ret;
	text[strcspn(text, "\n")] = '\0';
	ret = parse_long(text, 1, UINT32_MAX, &v);
	free(text);
	if (ret)
		return -EINVAL;
	*seq = (unsigned int)v;
	return 0;
}

int kfdcr_latest_write(int jobfd, unsigned int seq, struct kfdcr_err *err)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%u\n", seq);
	return kfdcr_write_atomic(jobfd, "LATEST", buf, strlen(buf), err);
}

static int cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return x < y ? -1 : x > y;
}

int kfdcr_list_seqs(int jobfd, unsigned int **seqs, unsigned int *n)
{
	struct dirent *de;
	DIR *d;
	int fd = dup(jobfd);

	*seqs = NULL;
	*n = 0;
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		xclose(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		long v;

		if (parse_long(de->d_name, 1, UINT32_MAX, &v) || de->d_name[0] == '0')
			continue;
		if ((*n & 63) == 0) {
			unsigned int *s = realloc(*seqs, (*n + 64) * sizeof(*s));

			if (!s) {
				closedir(d);
				return -ENOMEM;
			}
			*seqs = s;
		}
		(*seqs)[(*n)++] = (unsigned int)v;
	}
	closedir(d);
	if (*n)
		qsort(*seqs, *n, sizeof(**seqs), cmp_uint);
	return 0;
}

int kfdcr_prune(int jobfd, unsigned int keep, unsigned int latest)
{
	return kfdcr_prune_protect(jobfd, keep, latest, 0);
}

int kfdcr_prune_protect(int jobfd, unsigned int keep, unsigned int latest, unsigned int protect)
{
	unsigned int *seqs, n, kept = 0;
	int ret = kfdcr_list_seqs(jobfd, &seqs, &n);

	if (ret)
		return ret;
	/* newest first: the committed ones up to LATEST count towards keep */
	for (unsigned int i = n; i-- > 0;) {
		char name[16];

		if (seqs[i] > latest)
			continue;	/* not committed (yet): not ours to remove */
		if (kept < keep || seqs[i] == latest) {
			kept++;
			continue;
		}
		if (protect && seqs[i] == protect)
			continue;	/* still being restored from: kept beyond @keep */
		snprintf(name, sizeof(name), "%u", seqs[i]);
		if (kfdcr_rmtree(jobfd, name))
			ret = -EIO;
	}
	free(seqs);
	return ret;
}

/* ---- JSON ---- */

int kfdcr_json_escape(const char *s, char *out, size_t len)
{
	size_t at = 0;

	for (; *s && at + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			at += snprintf(out + at, len - at, "\\%c", c);
		else if (c < 0x20)
			at += snprintf(out + at, len - at, "\\u%04x", c);
		else
			out[at++] = (char)c;
	}
	out[at] = '\0';
	return *s ? -ENOSPC : 0;
}

void kfdcr_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}
