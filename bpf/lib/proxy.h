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
 */
#ifndef __MBR_PROXY_H
#define __MBR_PROXY_H

#include "common.h"
#include "pkt.h"

#define PROXY_ADDR	0x7f000001	/* 127.0.0.1, host order */

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
 * it MARK_MAGIC_TO_PROXY | proxy_port << 16.
 * Returns 0, DROP_PROXY_LOOKUP_FAILED (no socket: proxy down or port not
 * realized), DROP_PROXY_SET_FAILED (bpf_sk_assign refused, e.g. not at tc
 * ingress; BPF_PROG_TEST_RUN is not) or DROP_PROXY_UNKNOWN_PROTO.
 */
static __always_inline int proxy_redirect4(struct __sk_buff *skb, const struct pkt4 *p, __u16 proxy_port)
{
	struct bpf_sock *sk;
	int err, ret;

	sk = __proxy_lookup4(skb, p, proxy_port, &err);
	if (!sk)
		return err;
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
