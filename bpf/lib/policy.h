/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy: one LPM trie for all local endpoints, keyed by (endpoint, peer
 * identity, direction, protocol, port prefix), and the lookup that applies
 * reference/cilium-semantics.md §2.5 precedence to it.
 */
#ifndef __MBR_POLICY_H
#define __MBR_POLICY_H

#include "common.h"
#include "endpoints.h"

/*
 * struct policy_key: LPM trie key of mbr_policy_v1.
 *
 *   off size field
 *     0    4 prefixlen  host order; bits that must match after this field.
 *                       ep_id, sec_label and egress always match exactly
 *                       (72 bits), then protocol (8) and dport (16) form the
 *                       prefix: 72 = any protocol, any port; 80 = this
 *                       protocol, any port; 96 = exact port; 81..95 = a port
 *                       range aligned to a power of two (the policy engine
 *                       splits ranges into such prefixes)
 *     4    4 ep_id      host order; the local endpoint the entry belongs to
 *     8    4 sec_label  host order; peer identity, 0 = any peer (L4-only)
 *    12    1 egress     1 = egress (peer is the destination), 0 = ingress
 *    13    1 protocol   IPPROTO_*; 0 when prefixlen is 72
 *    14    2 dport      NETWORK order, so the trie's MSB-first prefix is a
 *                       port range; ICMP: the type (bpf_htons(type))
 *   size 16
 *
 * Wildcards: sec_label 0 is the "any peer" entry (a separate exact key, not
 * a prefix); protocol and port are wildcarded by the prefix length. Host byte
 * order of the exact fields does not matter to the trie since they are always
 * matched whole.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 sec_label;
	__u8 egress;
	__u8 protocol;
	__be16 dport;
};

#define POLICY_PREFIX_EXACT_FIELDS	72	/* ep_id + sec_label + egress */
#define POLICY_PREFIX_FULL		96	/* + protocol + dport */

/*
 * struct policy_entry: value of mbr_policy_v1.
 *
 *   off size field
 *     0    2 proxy_port      NETWORK order; != 0: redirect to the L7 proxy
 *                            listening on 127.0.0.1:proxy_port (proxy.h)
 *     2    1 deny            1 = deny entry (wins, reference §2.5)
 *     3    1 lpm_prefix_len  prefixlen - 72 of this entry's key (0..24),
 *                            written by userspace; a trie lookup does not say
 *                            which prefix matched, and the precedence rule
 *                            (step 2 below) and the event's match type need it
 *     4    4 cookie          host order; opaque, the agent maps it back to the
 *                            policies that produced the entry (for events)
 *   size 8
 */
struct policy_entry {
	__be16 proxy_port;
	__u8 deny;
	__u8 lpm_prefix_len;
	__u32 cookie;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 1024 * 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_policy_v1 SEC(".maps");

/* Result of one side (egress of the source, ingress of the destination). */
#define SIDE_NOT_EVALUATED	0	/* this decision point does not decide this side */
#define SIDE_NOT_ENFORCED	1	/* direction not enforced for the endpoint: allow all */
#define SIDE_ALLOWED		2
#define SIDE_REDIRECTED		3	/* allowed, to the proxy */
#define SIDE_DENIED		4	/* explicit deny entry (DROP_POLICY_DENY) */
#define SIDE_DEFAULT_DENIED	5	/* no entry (DROP_POLICY) */
#define SIDE_F_AUDITED		0x80	/* a deny that audit mode let through */

/* Policy match types, Cilium's numbering (pkg/monitor/api/types.go). */
#define MATCH_NONE		0
#define MATCH_L3_ONLY		1	/* peer, any proto/port */
#define MATCH_L3_L4		2	/* peer + port (or port range) */
#define MATCH_L4_ONLY		3	/* any peer + port */
#define MATCH_ALL		4	/* any peer, any proto/port */
#define MATCH_L3_PROTO		5	/* peer + protocol */
#define MATCH_PROTO_ONLY	6	/* any peer + protocol */

struct policy_side {
	__s32 ret;		/* 0, DROP_POLICY or DROP_POLICY_DENY (even when audited) */
	__u32 cookie;		/* policy_entry.cookie of the chosen entry, 0 if none */
	__u16 proxy_port;	/* host order, 0 = no redirect */
	__u8 result;		/* SIDE_* | SIDE_F_AUDITED */
	__u8 match;		/* MATCH_* */
};

static __always_inline __u8 policy_match_type(bool l3, __u8 lpm_prefix_len)
{
	if (lpm_prefix_len == 0)
		return l3 ? MATCH_L3_ONLY : MATCH_ALL;
	if (lpm_prefix_len == 8)
		return l3 ? MATCH_L3_PROTO : MATCH_PROTO_ONLY;
	return l3 ? MATCH_L3_L4 : MATCH_L4_ONLY;
}

/*
 * __policy_can_access looks up the policy of endpoint @ep_id for a packet
 * exchanged with @peer in direction @egress, and fills @s.
 * Returns 0 (allowed; s->proxy_port says whether to redirect), DROP_POLICY_DENY
 * or DROP_POLICY. Precedence (reference §2.5, Cilium's __policy_can_access):
 */
static __always_inline int
__policy_can_access(__u32 ep_id, __u32 peer, __u8 egress, __u8 proto, __be16 dport,
		    struct policy_side *s)
{
	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.ep_id = ep_id,
		.sec_label = peer,
		.egress = egress,
		.protocol = proto,
		.dport = dport,
	};
	const struct policy_entry *l3, *l4, *chosen;
	bool is_l3;

	/* 1. (endpoint, peer identity, dir, proto, dport): a deny drops. */
	l3 = bpf_map_lookup_elem(&mbr_policy_v1, &key);
	if (l3 && l3->deny) {
		chosen = l3;
		is_l3 = true;
		goto out;
	}

	/* 2. (endpoint, any peer, dir, proto, dport). The L4-only entry is
	 *    chosen when 2a. it is a deny, 2b. there is no L3 entry, 2c. it
	 *    redirects and the L3 entry does not, or 2d. both or neither
	 *    redirect and its LPM prefix is longer; otherwise 2e. the L3 entry.
	 */
	key.sec_label = IDENTITY_ANY;
	l4 = bpf_map_lookup_elem(&mbr_policy_v1, &key);
	if (l4 && (l4->deny ||						/* 2a */
		   !l3 ||						/* 2b */
		   (l4->proxy_port && !l3->proxy_port) ||		/* 2c */
		   (!l4->proxy_port == !l3->proxy_port &&
		    l4->lpm_prefix_len > l3->lpm_prefix_len))) {	/* 2d */
		chosen = l4;
		is_l3 = false;
	} else if (l3) {						/* 2e */
		chosen = l3;
		is_l3 = true;
	} else {
		/* 3. No entry: default deny. */
		s->result = SIDE_DEFAULT_DENIED;
		s->match = MATCH_NONE;
		s->cookie = 0;
		s->proxy_port = 0;
		return s->ret = DROP_POLICY;
	}
out:
	s->cookie = chosen->cookie;
	s->match = policy_match_type(is_l3, chosen->lpm_prefix_len);
	if (chosen->deny) {
		/* 1. or 2a.: explicit deny. */
		s->result = SIDE_DENIED;
		s->proxy_port = 0;
		return s->ret = DROP_POLICY_DENY;
	}
	s->proxy_port = bpf_ntohs(chosen->proxy_port);
	s->result = s->proxy_port ? SIDE_REDIRECTED : SIDE_ALLOWED;
	return s->ret = 0;
}

/*
 * policy_can_access decides one side for endpoint @ep: not enforced ->
 * allowed without a lookup; otherwise __policy_can_access. In audit mode
 * (@audit: global config or the endpoint's EP_F_AUDIT) a would-be drop is
 * reported (SIDE_F_AUDITED, s->ret keeps the drop reason) but returns 0.
 * Returns 0 or the drop reason.
 */
static __always_inline int
policy_can_access(const struct endpoint_info *ep, __u32 peer, __u8 egress, __u8 proto,
		  __be16 dport, bool audit, struct policy_side *s)
{
	__u32 enforced = egress ? EP_F_EGRESS_ENFORCED : EP_F_INGRESS_ENFORCED;
	int ret;

	if (!(ep->flags & enforced)) {
		s->ret = 0;
		s->result = SIDE_NOT_ENFORCED;
		return 0;
	}
	ret = __policy_can_access(ep->ep_id, peer, egress, proto, dport, s);
	if (IS_ERR(ret) && (audit || (ep->flags & EP_F_AUDIT))) {
		s->result |= SIDE_F_AUDITED;
		return 0;
	}
	return ret;
}

static __always_inline int
policy_can_egress4(const struct endpoint_info *ep, __u32 dst_identity, __u8 proto, __be16 dport,
		   bool audit, struct policy_side *s)
{
	return policy_can_access(ep, dst_identity, DIR_EGRESS, proto, dport, audit, s);
}

static __always_inline int
policy_can_ingress4(const struct endpoint_info *ep, __u32 src_identity, __u8 proto, __be16 dport,
		    bool audit, struct policy_side *s)
{
	return policy_can_access(ep, src_identity, DIR_INGRESS, proto, dport, audit, s);
}

#endif /* __MBR_POLICY_H */
