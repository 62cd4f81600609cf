/* peer_types — plain data shared by the socket-holder iterator (peer.bpf.c) and its
 * reader (peer.c): one pass of the iterator answers a batch of lookups at once. */
#ifndef VOUCH_PEER_TYPES_H
#define VOUCH_PEER_TYPES_H

#ifdef __BPF__
/* vmlinux.h provides __u32, __u64 */
#else
#include <linux/types.h>
#endif

#define PEER_ITER_BATCH 64 /* socket inodes looked up by one pass */

/* One record the iterator writes: the socket inode want[slot] is held by tgid (root pid
 * namespace). */
struct peer_iter_rec {
	__u32 slot;
	__u32 tgid;
};

#endif
