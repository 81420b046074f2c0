/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 redirect: hand a packet to the local proxy with bpf_sk_assign
 * (reference/datapath-trial.md §3a; DESIGN §4).
 *
 * Preconditions, in the node network namespace:
 *  - the proxy listens on 127.0.0.1:<proxy_port> (TCP) or has a UDP socket
 *    bound there, with IP_TRANSPARENT set (otherwise the SYN-ACK from the
 *    foreign source address cannot be routed);
 *  - `ip rule add fwmark 0x200/0xf00 lookup 2004` and
 *    `ip route add local 0.0.0.0/0 dev lo table 2004`, so the marked packet
 *    is delivered locally instead of forwarded.
 * bpf_sk_assign only works at tc INGRESS: only the decision points
 * (from_container, from_netdev) can redirect. No socket -> drop (fail closed).
 *
 * TCP: the proxy learns the original destination from the accepted socket's
 * local address. UDP: every redirected datagram first records its original
 * destination and the sending endpoint's identity in mbr_origdst_v1
 * (datapath-trial.md §4 variant ii), keyed by the client's address and port:
 * the proxy reads the identity there, and the destination too for datagrams
 * it cannot read IP_ORIGDSTADDR of (node:dgram's).
 */
#ifndef __MBR_PROXY_H
#define __MBR_PROXY_H

#include "common.h"
#include "pkt.h"

#define PROXY_ADDR	0x7f000001	/* 127.0.0.1, host order */

/*
 * struct proxy_orig_key: key of mbr_origdst_v1, the client of a redirected
 * UDP datagram (what the proxy sees as the datagram's source).
 *
 *   off size field
 *     0    4 saddr   network order, client address
 *     4    2 sport   network order, client port
 *     6    1 proto   IPPROTO_UDP (the only protocol written for now)
 *     7    1 pad     zero
 *   size 8
 */
struct proxy_orig_key {
	__be32 saddr;
	__be16 sport;
	__u8 proto;
	__u8 pad;
};

/*
 * struct proxy_orig_entry: value of mbr_origdst_v1, where the client sent the
 * datagram before it was redirected.
 *
 *   off size field
 *     0    4 daddr     network order, original destination address
 *     4    2 dport     network order, original destination port
 *     6    2 pad       zero
 *     8    4 identity  host order, security identity of the client (the
 *                      flow's source identity, as in its conntrack entry)
 *    12    4 pad2      zero
 *   size 16
 *
 * Lifecycle: written by proxy_redirect4 for EVERY redirected UDP datagram
 * (full check and cached fast path alike), after the proxy socket was found
 * and before bpf_sk_assign, so when the proxy reads the entry for a datagram
 * it received, the entry was written for that datagram or a later one of the
 * same client address/port. Nothing in the datapath reads it (there is no
 * NAT keyed on it), so a stale entry cannot steer traffic; the LRU evicts old
 * clients. A client sending from one port to two servers at once races: the
 * proxy may read the later destination for the earlier datagram.
 */
struct proxy_orig_entry {
	__be32 daddr;
	__be16 dport;
	__u16 pad;
	__u32 identity;
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct proxy_orig_key);
	__type(value, struct proxy_orig_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_origdst_v1 SEC(".maps");

/*
 * __proxy_orig_record4 records the original destination of @p, sent by a
 * client of identity @src_identity, in mbr_origdst_v1.
 * Returns 0 or DROP_PROXYMAP_CREATE_FAILED.
 */
static __always_inline int __proxy_orig_record4(const struct pkt4 *p, __u32 src_identity)
{
	struct proxy_orig_key k = {
		.saddr = p->saddr,
		.sport = p->sport,
		.proto = p->proto,
	};
	struct proxy_orig_entry v = {
		.daddr = p->daddr,
		.dport = p->dport,
		.identity = src_identity,
	};

	if (bpf_map_update_elem(&mbr_origdst_v1, &k, &v, BPF_ANY) < 0)
		return DROP_PROXYMAP_CREATE_FAILED;
	return 0;
}

/*
 * __proxy_lookup4 finds the socket for @p: TCP first looks for an established
 * proxy socket of this very tuple (the transparent socket the proxy accepted),
 * then for the listener on 127.0.0.1:@proxy_port; UDP looks for the socket on
 * 127.0.0.1:@proxy_port (a wildcard-bound socket matches too).
 * Returns a referenced socket or NULL; *err says why not.
 */
static __always_inline struct bpf_sock *__proxy_lookup4(struct __sk_buff *skb, const struct pkt4 *p,
							__u16 proxy_port, int *err)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = p->saddr;
	t.ipv4.daddr = p->daddr;
	t.ipv4.sport = p->sport;
	t.ipv4.dport = p->dport;
	*err = DROP_PROXY_LOOKUP_FAILED;

	if (p->proto == IPPROTO_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			/* A listener on the original destination is not the proxy. */
			if (sk->state != BPF_TCP_LISTEN)
				return sk;
			bpf_sk_release(sk);
		}
		t.ipv4.daddr = bpf_htonl(PROXY_ADDR);
		t.ipv4.dport = bpf_htons(proxy_port);
		return bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (p->proto == IPPROTO_UDP) {
		t.ipv4.daddr = bpf_htonl(PROXY_ADDR);
		t.ipv4.dport = bpf_htons(proxy_port);
		return bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	*err = DROP_PROXY_UNKNOWN_PROTO;
	return NULL;
}

/*
 * proxy_redirect4 assigns @skb to the proxy socket for @proxy_port and marks
 * it MARK_MAGIC_TO_PROXY | proxy_port << 16. A UDP datagram's original
 * destination and @src_identity (the client's identity) are recorded in
 * mbr_origdst_v1 first, once the socket is found.
 * Returns 0, DROP_PROXY_LOOKUP_FAILED (no socket: proxy down or port not
 * realized), DROP_PROXYMAP_CREATE_FAILED (UDP: the original destination could
 * not be recorded; fail closed, the client retries, rather than hand the proxy
 * a datagram it cannot place), DROP_PROXY_SET_FAILED (bpf_sk_assign refused,
 * e.g. not at tc ingress; BPF_PROG_TEST_RUN is not) or
 * DROP_PROXY_UNKNOWN_PROTO.
 */
static __always_inline int proxy_redirect4(struct __sk_buff *skb, const struct pkt4 *p, __u16 proxy_port,
					   __u32 src_identity)
{
	struct bpf_sock *sk;
	int err, ret;

	sk = __proxy_lookup4(skb, p, proxy_port, &err);
	if (!sk)
		return err;
	if (p->proto == IPPROTO_UDP) {
		ret = __proxy_orig_record4(p, src_identity);
		if (IS_ERR(ret)) {
			bpf_sk_release(sk);
			return ret;
		}
	}
	ret = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (ret < 0)
		return DROP_PROXY_SET_FAILED;
	skb->mark = MARK_MAGIC_TO_PROXY | ((__u32)proxy_port << MARK_IDENTITY_SHIFT);
	return 0;
}

/* proxy_marked says whether @skb is the proxy's own upstream traffic; if so
 * *identity is the source identity the proxy put in the mark. */
static __always_inline bool proxy_marked(const struct __sk_buff *skb, __u32 *identity)
{
	if ((skb->mark & MARK_MAGIC_MASK) != MARK_MAGIC_PROXY)
		return false;
	*identity = skb->mark >> MARK_IDENTITY_SHIFT;
	return true;
}

#endif /* __MBR_PROXY_H */
