/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Conntrack: one LRU entry per allowed flow, keyed by the tuple of the
 * packet that opened it (the "forward" direction).
 *
 * How programs use it (reference §7.3):
 *  - a packet whose REVERSED tuple is in the map is a reply: it passes
 *    without policy (CT_REPLY);
 *  - an ICMP error quoting a packet of a known flow passes (CT_RELATED);
 *  - otherwise (CT_NEW, or CT_ESTABLISHED = its own tuple is known) policy is
 *    evaluated on every packet, so removing a rule cuts established flows,
 *    and the entry is created or refreshed only when the packet is allowed.
 *
 * Concurrency: entries are written in place without locks. Two CPUs creating
 * the same flow both write a complete entry (BPF_ANY), last writer wins, and
 * both entries are equivalent. last_seen_ns is refreshed at most once per
 * second per flow to keep the cache line mostly read-only; flags are only
 * ever OR-ed in (a lost update delays a "closing" mark by one packet).
 * The LRU evicts the least recently used flows when full; an entry older
 * than its lifetime counts as absent.
 */
#ifndef __MBR_CONNTRACK_H
#define __MBR_CONNTRACK_H

#include "common.h"
#include "pkt.h"

/*
 * struct ct_key: key of mbr_ct_v1 (IPv4).
 *
 *   off size field
 *     0    4 saddr   network order, source of the packet that opened the flow
 *     4    4 daddr   network order
 *     8    2 sport   network order; ICMP echo: the id (pkt.h)
 *    10    2 dport   network order; ICMP echo request flows: 0
 *    12    1 proto   IPPROTO_*
 *    13    3 pad     zero
 *   size 16
 */
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

#define CT_F_PROXY_REDIRECT	0x01	/* forward packets go to the proxy (proxy_port) */
#define CT_F_CLOSING		0x02	/* TCP FIN or RST seen: short lifetime */
#define CT_F_SEEN_REPLY		0x04	/* a reply passed */
#define CT_F_FROM_PROXY		0x08	/* opened by the proxy's upstream socket (MARK_MAGIC_PROXY) */
#define CT_F_AUDITED		0x10	/* opened by a packet that audit mode let through */

/*
 * struct ct_entry: value of mbr_ct_v1.
 *
 *   off size field
 *     0    8 last_seen_ns  host order, bpf_ktime_get_ns() (CLOCK_MONOTONIC)
 *     8    4 src_identity  host order, identity of the flow's source
 *    12    2 proxy_port    NETWORK order, 0 = not redirected
 *    14    1 flags         CT_F_*
 *    15    1 pad           zero
 *   size 16
 */
struct ct_entry {
	__u64 last_seen_ns;
	__u32 src_identity;
	__be16 proxy_port;
	__u8 flags;
	__u8 pad;
};

#define CT_LIFETIME_TCP_NS	(21600ULL * NSEC_PER_SEC)	/* 6 h */
#define CT_LIFETIME_CLOSING_NS	(10ULL * NSEC_PER_SEC)
#define CT_LIFETIME_OTHER_NS	(60ULL * NSEC_PER_SEC)
#define CT_REFRESH_NS		NSEC_PER_SEC

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_ct_v1 SEC(".maps");

enum ct_state {
	CT_NEW = 0,
	CT_ESTABLISHED = 1,	/* the packet's own tuple is known */
	CT_REPLY = 2,		/* the reversed tuple is known */
	CT_RELATED = 3,		/* ICMP error quoting a known flow */
};

static __always_inline void ct_key_fwd4(struct ct_key *k, __be32 saddr, __be32 daddr,
					__be16 sport, __be16 dport, __u8 proto)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

static __always_inline __u64 ct_lifetime(const struct ct_key *k, const struct ct_entry *e)
{
	if (e->flags & CT_F_CLOSING)
		return CT_LIFETIME_CLOSING_NS;
	return k->proto == IPPROTO_TCP ? CT_LIFETIME_TCP_NS : CT_LIFETIME_OTHER_NS;
}

/* __ct_lookup returns a live entry for @k or NULL. */
static __always_inline struct ct_entry *__ct_lookup(const struct ct_key *k, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&mbr_ct_v1, k);

	if (e && now - e->last_seen_ns > ct_lifetime(k, e))
		return NULL;
	return e;
}

static __always_inline void __ct_touch(struct ct_entry *e, const struct pkt4 *p, __u64 now, __u8 flags)
{
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		flags |= CT_F_CLOSING;
	if ((e->flags & flags) != flags)
		e->flags |= flags;
	if (now - e->last_seen_ns > CT_REFRESH_NS)
		e->last_seen_ns = now;
}

/*
 * ct_lookup4 classifies @p (see the header comment). On CT_REPLY and
 * CT_RELATED it refreshes the entry. On CT_ESTABLISHED *@entry points to the
 * packet's entry; the caller refreshes it with ct_update4 once policy allowed
 * the packet. A TCP SYN on a known-but-closing tuple is a new flow.
 */
static __always_inline enum ct_state ct_lookup4(const struct pkt4 *p, __u64 now, struct ct_entry **entry)
{
	struct ct_key k;
	struct ct_entry *e;

	*entry = NULL;
	if (p->flags & PKT_F_ICMP_ERROR) {
		ct_key_fwd4(&k, p->inner_saddr, p->inner_daddr, p->inner_sport, p->inner_dport,
			    p->inner_proto);
		e = __ct_lookup(&k, now);
		if (!e) {
			ct_key_fwd4(&k, p->inner_daddr, p->inner_saddr, p->inner_dport,
				    p->inner_sport, p->inner_proto);
			e = __ct_lookup(&k, now);
		}
		if (e)
			return CT_RELATED;
		/* An ICMP error about nothing we know is a new ICMP "flow":
		 * policy decides (on the ICMP type). */
		return CT_NEW;
	}

	/* Reply? */
	ct_key_fwd4(&k, p->daddr, p->saddr, p->dport, p->sport, p->proto);
	e = __ct_lookup(&k, now);
	if (e) {
		__ct_touch(e, p, now, CT_F_SEEN_REPLY);
		return CT_REPLY;
	}

	ct_key_fwd4(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	e = __ct_lookup(&k, now);
	if (!e)
		return CT_NEW;
	if (p->proto == IPPROTO_TCP && (e->flags & CT_F_CLOSING) &&
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return CT_NEW;
	*entry = e;
	return CT_ESTABLISHED;
}

/*
 * ct_update4 records an allowed packet: refreshes @e (CT_ESTABLISHED) or
 * creates the entry (CT_NEW). Returns 0 or DROP_CT_CREATE_FAILED.
 */
static __always_inline int ct_update4(const struct pkt4 *p, struct ct_entry *e, __u64 now,
				      __u32 src_identity, __u16 proxy_port, __u8 flags)
{
	struct ct_entry fresh = {};
	struct ct_key k;

	if (proxy_port)
		flags |= CT_F_PROXY_REDIRECT;
	if (e) {
		if (e->proxy_port != bpf_htons(proxy_port))
			e->proxy_port = bpf_htons(proxy_port);
		if (e->src_identity != src_identity)
			e->src_identity = src_identity;
		__ct_touch(e, p, now, flags);
		return 0;
	}
	ct_key_fwd4(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	fresh.last_seen_ns = now;
	fresh.src_identity = src_identity;
	fresh.proxy_port = bpf_htons(proxy_port);
	fresh.flags = flags;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		fresh.flags |= CT_F_CLOSING;
	if (bpf_map_update_elem(&mbr_ct_v1, &k, &fresh, BPF_ANY) < 0)
		return DROP_CT_CREATE_FAILED;
	return 0;
}

#endif /* __MBR_CONNTRACK_H */
