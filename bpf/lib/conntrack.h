/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Conntrack: one LRU entry per allowed flow, keyed by the tuple of the
 * packet that opened it (the "forward" direction).
 *
 * How programs use it (reference §7.3):
 *  - a packet whose REVERSED tuple is in the map is a reply: it passes
 *    without policy (CT_REPLY);
 *  - an ICMP error quoting a packet of a known flow passes (CT_RELATED);
 *  - otherwise (CT_NEW, or CT_ESTABLISHED = its own tuple is known) policy
 *    decides every packet, so removing a rule cuts established flows, and the
 *    entry is created or refreshed only when the packet is allowed.
 *
 * Cached decision (the established-flow fast path, decision.h
 * decision_cached): the entry remembers the forward decision of its last full
 * check and the policy revision (polrev.h) that check ran at. A forward
 * packet of an established flow seen by the same hook while the revision is
 * unchanged reuses it instead of looking up ipcache, endpoints and policy:
 * the revision changes after every write to those maps, so "unchanged"
 * means every input of the decision is unchanged, and a removed rule still
 * cuts the flow on its first packet after the bump. Only allowed outcomes
 * (forwarded, audited, redirected) are cached; drops are not.
 *
 * Concurrency: entries are written in place without locks. Two CPUs creating
 * the same flow both write a complete entry (BPF_ANY), last writer wins, and
 * both entries are equivalent. last_seen_ns is refreshed at most once per
 * second per flow to keep the cache line mostly read-only; flags are only
 * ever OR-ed in (a lost update delays a "closing" mark by one packet).
 * The cached decision is ONE aligned u64 (revision, proxy port and outcome
 * together) read and written with single 8-byte accesses, so CPUs re-checking
 * the same flow at different revisions can overwrite each other but never
 * mix one check's revision with another's outcome; the loser's packet only
 * costs the next packet a full check. dec_ifindex, the hook the decision
 * belongs to, is written only when the entry is created, never in place.
 * The LRU evicts the least recently used flows when full; an entry older
 * than its lifetime counts as absent.
 */
#ifndef __MBR_CONNTRACK_H
#define __MBR_CONNTRACK_H

#include "common.h"
#include "pkt.h"
#include "polrev.h"

/*
 * struct ct_key: key of mbr_ct_v2 (IPv4).
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
 * struct ct_entry: value of mbr_ct_v2 (v1 had no cached decision: 16 bytes).
 *
 *   off size field
 *     0    8 last_seen_ns  host order, bpf_ktime_get_ns() (CLOCK_MONOTONIC)
 *     8    4 src_identity  host order, identity of the flow's source
 *    12    2 proxy_port    NETWORK order, 0 = not redirected
 *    14    1 flags         CT_F_*
 *    15    1 pad           zero
 *    16    8 decision      host order, the cached forward decision, 0 = none:
 *                            bits  0..39 low 40 bits of the policy revision
 *                                        the decision was made at
 *                            bits 40..55 proxy port (host order), 0 = none
 *                            bits 56..63 CT_DEC_F_* (the OBS_* point that
 *                                        decided, audit, node origin)
 *    24    4 dec_ifindex   host order, the ifindex the decision depends on:
 *                          from_container the source veth, to_container the
 *                          destination veth, from_netdev 0; set at creation
 *    28    4 pad2          zero
 *   size 32
 */
struct ct_entry {
	__u64 last_seen_ns;
	__u32 src_identity;
	__be16 proxy_port;
	__u8 flags;
	__u8 pad;
	__u64 decision;
	__u32 dec_ifindex;
	__u32 pad2;
};

/* struct ct_entry.decision */
#define CT_DEC_REV_BITS		40
#define CT_DEC_PORT_SHIFT	40
#define CT_DEC_FLAGS_SHIFT	56
#define CT_DEC_F_OBS_MASK	0x03	/* OBS_* of the deciding program; 0 = no cached decision */
#define CT_DEC_F_AUDIT		0x04	/* the verdict was AUDIT (audit mode let a drop pass) */
#define CT_DEC_F_NODE		0x08	/* to_container: the node itself sent it (skb->ingress_ifindex 0) */
#define CT_DEC_REV_MASK		((1ULL << CT_DEC_REV_BITS) - 1)

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
} mbr_ct_v2 SEC(".maps");

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
	struct ct_entry *e = bpf_map_lookup_elem(&mbr_ct_v2, k);

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
 * ct_dec_make builds a cached decision (struct ct_entry.decision) made at
 * policy revision @rev: @proxy_port (host order, 0 = none) and @dflags
 * (CT_DEC_F_*, the OBS_* point in the low bits). Returns 0 (no decision) when
 * the revision is unknown.
 */
static __always_inline __u64 ct_dec_make(__u64 rev, __u16 proxy_port, __u8 dflags)
{
	if (rev == POLREV_NONE || !(dflags & CT_DEC_F_OBS_MASK))
		return 0;
	return (rev & CT_DEC_REV_MASK) | ((__u64)proxy_port << CT_DEC_PORT_SHIFT) |
	       ((__u64)dflags << CT_DEC_FLAGS_SHIFT);
}

/* ct_dec_flags returns the CT_DEC_F_* bits of a cached decision. */
static __always_inline __u8 ct_dec_flags(__u64 dec)
{
	return dec >> CT_DEC_FLAGS_SHIFT;
}

/* ct_dec_proxy_port returns the proxy port (host order) of a cached decision. */
static __always_inline __u16 ct_dec_proxy_port(__u64 dec)
{
	return dec >> CT_DEC_PORT_SHIFT;
}

/*
 * ct_dec_get returns the decision @e cached for the hook @dec_ifindex if it
 * was made at revision @rev by a program with the same OBS_* point and
 * origin (@dflags: CT_DEC_F_OBS_MASK and CT_DEC_F_NODE bits), else 0.
 * One 8-byte load: the revision and the outcome come from the same check.
 */
static __always_inline __u64 ct_dec_get(const struct ct_entry *e, __u32 dec_ifindex, __u64 rev, __u8 dflags)
{
	const __u8 key = CT_DEC_F_OBS_MASK | CT_DEC_F_NODE;
	__u64 dec;

	if (rev == POLREV_NONE || e->dec_ifindex != dec_ifindex)
		return 0;
	dec = *(volatile const __u64 *)&e->decision;
	if ((dec & CT_DEC_REV_MASK) != (rev & CT_DEC_REV_MASK) ||
	    (ct_dec_flags(dec) & key) != (dflags & key) || !(dflags & CT_DEC_F_OBS_MASK))
		return 0;
	return dec;
}

/*
 * ct_refresh4 records another allowed packet of the flow of @e (@proxy_port
 * host order): keeps its proxy port current, ORs in @flags, refreshes
 * last_seen. Used by ct_update4 and by the fast path.
 */
static __always_inline void ct_refresh4(struct ct_entry *e, const struct pkt4 *p, __u64 now,
					__u16 proxy_port, __u8 flags)
{
	if (proxy_port)
		flags |= CT_F_PROXY_REDIRECT;
	if (e->proxy_port != bpf_htons(proxy_port))
		e->proxy_port = bpf_htons(proxy_port);
	__ct_touch(e, p, now, flags);
}

/*
 * ct_update4 records an allowed packet: refreshes @e (CT_ESTABLISHED) or
 * creates the entry (CT_NEW). @dec is the decision a full check just made
 * (ct_dec_make; 0 = nothing to cache) for the hook @dec_ifindex: a new entry
 * belongs to that hook and stores it; an existing entry stores it only if it
 * belongs to the same hook (dec_ifindex is never rewritten in place, see
 * "Concurrency"). Returns 0 or DROP_CT_CREATE_FAILED.
 */
static __always_inline int ct_update4(const struct pkt4 *p, struct ct_entry *e, __u64 now,
				      __u32 src_identity, __u16 proxy_port, __u8 flags,
				      __u64 dec, __u32 dec_ifindex)
{
	struct ct_entry fresh = {};
	struct ct_key k;

	if (e) {
		if (e->src_identity != src_identity)
			e->src_identity = src_identity;
		ct_refresh4(e, p, now, proxy_port, flags);
		if (dec && e->dec_ifindex == dec_ifindex &&
		    *(volatile __u64 *)&e->decision != dec)
			*(volatile __u64 *)&e->decision = dec;
		return 0;
	}
	if (proxy_port)
		flags |= CT_F_PROXY_REDIRECT;
	ct_key_fwd4(&k, p->saddr, p->daddr, p->sport, p->dport, p->proto);
	fresh.last_seen_ns = now;
	fresh.src_identity = src_identity;
	fresh.proxy_port = bpf_htons(proxy_port);
	fresh.flags = flags;
	fresh.decision = dec;
	fresh.dec_ifindex = dec_ifindex;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		fresh.flags |= CT_F_CLOSING;
	if (bpf_map_update_elem(&mbr_ct_v2, &k, &fresh, BPF_ANY) < 0)
		return DROP_CT_CREATE_FAILED;
	return 0;
}

#endif /* __MBR_CONNTRACK_H */
