/*
 * The wire format between vatrun's Go supervisor and its init stage (stage.c).
 *
 * The supervisor starts its own executable as
 *     argv = { "vatrun-init", VR_MARKER, "<config fd>", "<worker path>", "<worker argv0>", ... }
 * with the worker's environment. The config fd holds one struct vr_config followed by
 * bpf_len BPF instructions (struct sock_filter, 8 bytes each). The init stage writes
 * struct vr_msg records to status_fd.
 */
#ifndef VATRUN_STAGE_H
#define VATRUN_STAGE_H

#include <stdint.h>

#define VR_MARKER "__vatrun_init__"
#define VR_MAGIC 0x76617472u /* "vatr" */
#define VR_VERSION 4u
#define VR_MAX_RLIMITS 16
#define VR_MAX_BPF 4096

/* vr_config.flags */
#define VR_FLAG_PIDNS 0x1u    /* we are pid 1 of a new pid namespace: fork the worker as pid 2 */
#define VR_FLAG_MOUNTNS 0x2u  /* private mount namespace with a minimal root (see below) */
#define VR_FLAG_UTSNS 0x4u    /* new uts namespace: set the hostname */
#define VR_FLAG_DROPCAPS 0x8u /* empty the bounding set and ambient set before exec */
#define VR_FLAG_SETIDS 0x10u  /* the worker switches to worker_uid/worker_gid, no supplementary groups */
#define VR_FLAG_RECORD_DENIED 0x20u /* record the syscalls the filter refuses with ERRNO (see below) */

struct vr_rlimit {
	int32_t resource;
	int32_t pad;
	uint64_t cur;
	uint64_t max;
};

struct vr_config {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	int32_t keep_fds;  /* fds [0, keep_fds) reach the worker; everything above is closed at exec */
	int32_t status_fd; /* where vr_msg records go */
	uint32_t nrlimits;
	struct vr_rlimit rlimits[VR_MAX_RLIMITS];
	uint32_t bpf_len;    /* number of struct sock_filter following this struct */
	uint32_t mounts_len; /* bytes of the mount table following the BPF program */
	/* Landlock (0: off): the ABI whose rights the worker's ruleset handles (1..7), and the bytes
	 * of the list of paths it may read (NUL-terminated absolute paths) after the mount table. */
	uint32_t landlock_abi;
	uint32_t landlock_len;
	char hostname[64];
	uint32_t worker_uid; /* VR_FLAG_SETIDS: the worker's uid and gid (setgroups, setresgid, setresuid) */
	uint32_t worker_gid;
};

/*
 * The mount table (VR_FLAG_MOUNTNS): records of one kind byte, then the source and the target as
 * NUL-terminated absolute paths. The init stage builds a new root from them on a tmpfs: read-only,
 * nodev, nosuid, noexec, with a private /dev (null zero full random urandom), a fresh /proc (with a
 * pid namespace) with the sensitive parts masked, and no /sys; the host's root is detached.
 */
#define VR_MOUNT_RO 'r'      /* read-only bind of source (a file or a directory) at target */
#define VR_MOUNT_RW 'w'      /* read-write bind */
#define VR_MOUNT_SYMLINK 'l' /* symlink at target pointing to source (as written) */
#define VR_MOUNT_TMPFS 't'   /* a private tmpfs at target; source is its size in bytes (decimal) */

/* vr_msg.type */
#define VR_MSG_EXEC_OK 1      /* a = worker pid as the init stage sees it */
#define VR_MSG_SETUP_FAILED 2 /* a = errno, text = which step */
#define VR_MSG_EXITED 3       /* a = raw wait status; utime/stime/maxrss from wait4, cpu_nsec;
			       * count = refused calls not in the DENIED records (over VR_MAX_DENIED) */
#define VR_MSG_DENIED 4       /* sent before EXITED, one per refused syscall: a = nr, arch, err, count, args */

/* vr_msg.flags of EXEC_OK */
#define VR_EXEC_RECORDING 0x1u /* the refused syscalls are being recorded; else text says why not (or is empty) */

/*
 * Recording refused syscalls (VR_FLAG_RECORD_DENIED): the worker loads the program with every
 * `ret ERRNO|e` rewritten to `ret USER_NOTIF`, with SECCOMP_FILTER_FLAG_NEW_LISTENER, and hands the
 * listener to the init stage; a thread of the init stage evaluates the original program on each
 * notification's seccomp_data, records the call and answers with the errno the original program
 * returns. Allowed calls run the same program as without recording.
 */
#define VR_MAX_DENIED 32 /* distinct (arch, nr) recorded; further calls are only counted */

struct vr_msg {
	uint32_t type;
	int32_t a;
	int64_t utime_usec;
	int64_t stime_usec;
	int64_t maxrss_kb;
	int64_t cpu_nsec; /* the worker's process CPU clock read while a zombie; -1 if unknown */
	uint64_t forwarded; /* bit N: the init stage relayed signal N to the worker while it was alive */
	int64_t mono_nsec;  /* CLOCK_MONOTONIC when the worker's exec succeeded (EXEC_OK) or it was reaped (EXITED) */
	char text[160];
	/* VR_MSG_DENIED: one refused syscall (a is its number) */
	uint32_t arch;    /* AUDIT_ARCH_* */
	int32_t err;      /* the errno it got */
	uint64_t count;   /* how many times (EXITED: refused calls beyond the records) */
	uint64_t args[6]; /* of the first refused call */
	uint32_t flags;   /* EXEC_OK: VR_EXEC_* */
	uint32_t pad;
	uint64_t last;    /* DENIED: the rank of its latest refusal among all refused calls (1, 2, …) */
};

/* Evaluates a seccomp classic-BPF program on data (a struct seccomp_data) as the kernel would; sets
 * *ok to 0 (and returns 0) for an instruction it does not know or a malformed program. */
uint32_t vr_bpf_eval(const void *prog, uint32_t len, const void *data, int *ok);

/* Set by the constructor in every process: bit i set when fd i (0..63) was open at process start. */
#define VR_MAX_INHERITED_FD 64
extern uint64_t vr_inherited_fds;

/* Ends the calling process by signal sig, as the worker ended, so that its parent sees the same
 * wait status: default action for sig, no core dump of this process, sig unblocked, raised. Falls
 * back to _exit(128 + sig) for a signal whose default action does not terminate. */
void vr_die_by_signal(int sig) __attribute__((noreturn));

#endif
