/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Local endpoints: host-side veth ifindex -> endpoint id, identity and
 * enforcement flags. A packet whose veth is not in this map is not ours and
 * passes untouched.
 */
#ifndef __MBR_ENDPOINTS_H
#define __MBR_ENDPOINTS_H

#include "common.h"

#define EP_F_AUDIT		0x01	/* per-endpoint audit: would-be drops of this endpoint's policy pass */
#define EP_F_INGRESS_ENFORCED	0x02	/* ingress policy applies; otherwise ingress allows all, no lookup */
#define EP_F_EGRESS_ENFORCED	0x04	/* egress policy applies; otherwise egress allows all, no lookup */

/*
 * mbr_endpoint_v1: HASH, key __u32 ifindex (host order, the host-side veth of
 * the endpoint), value struct endpoint_info. All fields host order.
 *
 *   off size field
 *     0    4 ep_id     endpoint id (policy keys carry it), never 0
 *     4    4 identity  the endpoint's security identity
 *     8    4 flags     EP_F_*
 *   size 12
 */
struct endpoint_info {
	__u32 ep_id;
	__u32 identity;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_endpoint_v1 SEC(".maps");

static __always_inline const struct endpoint_info *endpoint_lookup(__u32 ifindex)
{
	return bpf_map_lookup_elem(&mbr_endpoint_v1, &ifindex);
}

#endif /* __MBR_ENDPOINTS_H */
