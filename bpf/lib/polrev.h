/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy revision: one global counter that changes whenever an input of a
 * policy decision may have changed, so conntrack can cache the decision of
 * an established flow (conntrack.h, "Cached decision") and skip the ipcache
 * and policy lookups while the revision stays the same.
 *
 * Contract (writers: the agent, the DNS proxy, the CLI; all of them through
 * src/datapath's map wrappers, which do it themselves):
 *
 *   every write to mbr_ipcache_v1, mbr_policy_v1, mbr_endpoint_v1 or
 *   mbr_config_v1 must be FOLLOWED by a revision bump, or established flows
 *   keep their previous verdict.
 *
 *  1. Write the maps first, bump second. A bump before the write would let a
 *     packet read the new revision, look up the old entries and cache the old
 *     verdict under the new revision, for good.
 *  2. Bump with an atomic add (userspace mmaps the value, BPF_F_MMAPABLE, and
 *     uses Atomics.add): two writers that read-modify-write could both store
 *     R + 1 and lose the second writer's change.
 *  3. Programs read the revision ONCE per packet, BEFORE any map read the
 *     decision depends on (endpoint, config, ipcache, policy), and cache the
 *     decision under the revision they read. Whatever was written before the
 *     bump they saw is visible to their lookups (x86-64 keeps loads in order;
 *     a weakly ordered CPU would need a load-acquire, which clang 14 cannot
 *     emit).
 *
 * Conntrack keeps the low CT_DEC_REV_BITS (40) bits of the revision; an
 * entry lives at most 6 h without a packet, so a false match needs 2^40
 * bumps between two packets of one flow (50 M bumps/s for 6 h).
 */
#ifndef __MBR_POLREV_H
#define __MBR_POLREV_H

#include "common.h"

/*
 * struct polrev_entry: value of mbr_polrev_v1[0] (ARRAY, one entry,
 * BPF_F_MMAPABLE). Host order.
 *
 *   off size field
 *     0    8 revision  starts at 0 when the map is created; only ever
 *                      incremented (atomically) by userspace
 *   size 8
 */
struct polrev_entry {
	__u64 revision;
};

/* What polrev_get returns if the revision cannot be read: nothing is cached. */
#define POLREV_NONE	(~0ULL)

#ifndef BPF_F_MMAPABLE
#define BPF_F_MMAPABLE	(1U << 10)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct polrev_entry);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_polrev_v1 SEC(".maps");

/*
 * polrev_get returns the current revision. Call it before reading any map a
 * decision depends on (rule 3 above). The array lookup is inlined by the
 * verifier and the slot always exists; POLREV_NONE only satisfies the
 * verifier's NULL check.
 */
static __always_inline __u64 polrev_get(void)
{
	const struct polrev_entry *e;
	__u32 zero = 0;

	e = bpf_map_lookup_elem(&mbr_polrev_v1, &zero);
	return e ? *(volatile const __u64 *)&e->revision : POLREV_NONE;
}

#endif /* __MBR_POLREV_H */
