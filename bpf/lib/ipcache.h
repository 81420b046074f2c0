/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ipcache: IP prefix -> security identity (and, for local endpoints, which
 * endpoint and veth). Longest prefix wins; a miss means reserved:world.
 * Written by the agent (node addresses as identity 1 = host, pods, CIDR and
 * FQDN identities) and by the DNS proxy (learned FQDN IPs).
 */
#ifndef __MBR_IPCACHE_H
#define __MBR_IPCACHE_H

#include "common.h"

#define IPCACHE_FAMILY_IPV4	4
#define IPCACHE_FAMILY_IPV6	6

/* prefixlen of a full IPv4 address: 8 family + 24 pad + 32 address bits. */
#define IPCACHE_PREFIX_HDR	32
#define IPCACHE_PREFIX_V4_FULL	(IPCACHE_PREFIX_HDR + 32)

/*
 * struct ipcache_key: LPM trie key of mbr_ipcache_v1.
 *
 *   off size field
 *     0    4 prefixlen  host order; counts the bits that must match AFTER this
 *                       field: family and pad always match, so an IPv4 /N is
 *                       32 + N, an IPv6 /N is 32 + N as well
 *     4    1 family     IPCACHE_FAMILY_IPV4 | IPCACHE_FAMILY_IPV6
 *     5    3 pad        zero
 *     8   16 addr       network order; IPv4 in addr[0..3], addr[4..15] zero
 *   size 24
 *
 * The datapath looks up IPv4 only (for now); the key carries the family so
 * IPv6 entries can be added without a layout change.
 */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/*
 * struct ipcache_entry: value of mbr_ipcache_v1. All fields host order.
 *
 *   off size field
 *     0    4 identity  security identity of the prefix
 *     4    4 ep_id     local endpoint id; 0 = not a local endpoint
 *     8    4 ifindex   the local endpoint's host-side veth (key of
 *                      mbr_endpoint_v1); 0 when ep_id is 0
 *    12    4 flags     reserved, 0
 *   size 16
 */
struct ipcache_entry {
	__u32 identity;
	__u32 ep_id;
	__u32 ifindex;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_entry);
	__uint(max_entries, 512 * 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_ipcache_v1 SEC(".maps");

/* ipcache_lookup4 returns the longest-prefix entry for @addr, or NULL
 * (the caller treats NULL as IDENTITY_WORLD). */
static __always_inline const struct ipcache_entry *ipcache_lookup4(__be32 addr)
{
	struct ipcache_key key = {
		.prefixlen = IPCACHE_PREFIX_V4_FULL,
		.family = IPCACHE_FAMILY_IPV4,
	};

	__builtin_memcpy(key.addr, &addr, sizeof(addr));
	return bpf_map_lookup_elem(&mbr_ipcache_v1, &key);
}

static __always_inline __u32 ipcache_identity(const struct ipcache_entry *e)
{
	return e ? e->identity : IDENTITY_WORLD;
}

#endif /* __MBR_IPCACHE_H */
