/*
 * The C-first launch of `vatrun run` (prelaunch.c): before the Go runtime starts, the constructor
 * forks an intermediate process that looks this exact invocation up in the launch cache and, on a
 * verified hit, clones the init stage, which waits at a gate; the Go side (prelaunch.go) then
 * computes the launch as always, compares it byte for byte with what was started, and opens the
 * gate only if they are equal.
 *
 * A cache entry (written only by the Go side, after an ordinary launch):
 *     u32 VR_LC_MAGIC, u32 VR_LC_VERSION, u8 key[32],
 *     u32 nverify, nverify × { str path, u64 dev, u64 ino, i64 size, i64 mtime, i64 mtime_nsec,
 *                               i64 ctime, i64 ctime_nsec },
 *     str invocation,
 *     u8 sha256[32] of everything before it.
 * An invocation (what sandbox.Start would clone and exec):
 *     u32 VR_INV_MAGIC, u32 VR_INV_VERSION, u64 clone flags (namespaces, CLONE_NEWUSER),
 *     u32 setgroups_deny, str uid_map, str gid_map,
 *     u32 nfds, nfds × i32 (the stage's fd i is the parent's fd N; VR_FD_DEVNULL; VR_FD_CLOSED),
 *     str dir, str config (struct vr_config and what follows it),
 *     u32 argc, argc × str (the worker's path, then its argv), u32 append_args, u32 envc, envc × str.
 * append_args 1: argv holds the worker's path and argv[0] only, and its arguments are the command
 * line's after `-- WORKER` (args_from), which the key leaves out.
 * str is a u32 length and that many bytes; integers are little-endian.
 */
#ifndef VATRUN_PRELAUNCH_H
#define VATRUN_PRELAUNCH_H

#include <stddef.h>
#include <stdint.h>

#define VR_LC_MAGIC 0x434c5256u  /* "VRLC" */
#define VR_LC_VERSION 1u
#define VR_INV_MAGIC 0x494c5256u /* "VRLI" */
#define VR_INV_VERSION 2u
#define VR_FD_DEVNULL (-1)
#define VR_FD_CLOSED (-2)
#define VR_LC_MAX (1u << 20) /* an entry's size bound */

struct vr_sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t n;
};
void vr_sha256_init(struct vr_sha256 *s);
void vr_sha256_update(struct vr_sha256 *s, const void *data, size_t len);
void vr_sha256_final(struct vr_sha256 *s, uint8_t out[32]);

/* What the intermediate process tells vatrun on the pid pipe: this header, then why_len bytes of
 * why (state 3) and inv_len bytes of the invocation it started (state 2). */
struct vr_pre_msg {
	int32_t state; /* 1 miss, 2 started, 3 refused or failed */
	int32_t pid;   /* the stage (0: none; with state 3, one it killed: vatrun reaps it) */
	int32_t err;   /* errno of what failed, or 0 */
	uint32_t why_len, inv_len;
	char key[65];
};

/* What the constructor did, for the Go side. */
struct vr_prelaunch {
	int state;          /* 0: not `vatrun run`, or no cache directory; 4: VATRUN_PRELAUNCH=off; 5: the
			     * intermediate process looks the entry up (its message on pid_fd says: 1 miss,
			     * 2 started, 3 refused or failed); 1-3 are also its own states */
	int mid;            /* state 5: the intermediate process (a child of this process, to reap) */
	int pid_fd;         /* state 5: its message (struct vr_pre_msg in prelaunch.c, then why, then the invocation) */
	int32_t pid, err;   /* in the intermediate process: the stage it started, the errno of a failure */
	int status_fd;      /* state 5: the read end of the stage's status pipe (close-on-exec) */
	int gate_fd;        /* state 5: the gate's write end: 'g' lets the stage fork the worker */
	char key[65];       /* in the intermediate process: the entry's name (hex of the key) */
	char dir[512];      /* state 5: the cache directory (…/vatrun/launch) */
	char why[800];
	int args_from;      /* index in argv of the worker's first argument after `-- WORKER`, or -1 */
	int argc;
	char **argv;      /* state 3: why the entry was not used */
};
extern struct vr_prelaunch vr_pre;

void vr_prelaunch(int argc, char **argv, char **envp);

/* The C-first stage's gate (an fd, or -1): vr_stage_main waits for one 'g' on it before it forks
 * the worker, so a worker only ever runs in a launch the Go side computed and confirmed. */
extern int vr_stage_gate;

/* vatrun's cache directory for this environment and euid (hostfacts.CacheBase); 0 for none. */
int vr_cache_base(char **envp, unsigned euid, char *out, size_t outsz);

/* Whether nobody but this euid (or root) can replace dir or anything above it. */
int vr_pre_trusted_dir(const char *dir);

/* The init stage's main (stage.c): returns at once unless argv[1] is VR_MARKER. */
void vr_stage_main(int argc, char **argv, char **envp);

#endif
