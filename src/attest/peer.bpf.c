/* peer.bpf.c — every process holding one socket, found in the kernel (used by peer.c).
 *
 * An iter/task_file program: reading an iterator created from its link walks every task's
 * fd table once and writes, for each open file whose inode is the socket inode user space
 * put in want_ino, the holder's tgid (root pid namespace) as a __u32. Threads that share
 * their leader's fd table are skipped by the kernel; a thread with its own fd table (clone
 * without CLONE_FILES) is visited and reported under its tgid. User space serializes the
 * lookups (want_ino is one global) and de-duplicates.
 *
 * Why: the same answer as scanning /proc/<pid>/fd (a readlink per fd on the host, ~1-3 ms
 * per new connection on a quiet machine) in one read(), and no /proc permission gaps.
 *
 * Built CO-RE against build/vmlinux.h (generated from the running kernel's BTF). */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#define S_IFMT 00170000 /* <sys/stat.h> values; vmlinux.h has no macros */
#define S_IFSOCK 0140000

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__u64 want_ino; /* .bss: the socket inode of the current lookup */

SEC("iter/task_file")
int peer_holders(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct inode *inode;
	__u32 tgid;

	if (!task || !file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode || BPF_CORE_READ(inode, i_ino) != want_ino ||
	    (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	tgid = (__u32)BPF_CORE_READ(task, tgid);
	bpf_seq_write(seq, &tgid, sizeof(tgid));
	return 0;
}
