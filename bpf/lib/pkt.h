/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: struct pkt4 holds what the policy, conntrack and event code
 * need from an Ethernet + IPv4 packet, filled by pkt_parse4().
 *
 * Ports are kept in network byte order. Two port pairs exist because ICMP is
 * looked up differently by policy and by conntrack:
 *  - sport/dport: the conntrack tuple ports. TCP/UDP/SCTP: the L4 ports.
 *    ICMP echo request: sport = echo id, dport = 0; echo reply: sport = 0,
 *    dport = echo id (so the reverse tuple of a reply is the request's tuple).
 *    Other ICMP and other protocols: 0, 0.
 *  - policy_port: what policy keys match on (policy.h): the destination port,
 *    or for ICMP bpf_htons(type) (reference §7.2: "ICMP type goes in dport").
 *
 * For ICMP errors (destination unreachable, source quench, redirect, time
 * exceeded, parameter problem) the tuple of the quoted packet is parsed into
 * inner_* so conntrack.h can find the flow the error relates to.
 */
#ifndef __MBR_PKT_H
#define __MBR_PKT_H

#include "common.h"

#define PKT_F_ICMP_ERROR	0x01	/* inner_* hold the quoted packet's tuple */

/* How far into the packet the parser reads directly; longer headers are
 * pulled into the linear area first. */
#define PKT_PULL_LEN	(ETH_HLEN + 60 + 20)

struct pkt4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;		/* conntrack tuple, see above */
	__be16 dport;
	__be16 policy_port;	/* policy lookup port, see above */
	__u8 proto;
	__u8 tcp_flags;		/* byte 13 of the TCP header */
	__u8 icmp_type;
	__u8 flags;		/* PKT_F_* */
	__u16 pad;
	__u32 len;		/* skb->len */
	__be32 inner_saddr;
	__be32 inner_daddr;
	__be16 inner_sport;
	__be16 inner_dport;
	__u8 inner_proto;
	__u8 pad2[3];
};

#define TCP_FLAG_FIN	0x01
#define TCP_FLAG_SYN	0x02
#define TCP_FLAG_RST	0x04
#define TCP_FLAG_ACK	0x10

/* One struct for the ports of TCP, UDP and SCTP: clang 14 otherwise merges
 * per-protocol loads into one access the verifier rejects ("invalid access to
 * packet"), so both ports are bounds-checked together, once. */
struct l4_ports {
	__be16 sport;
	__be16 dport;
};

static __always_inline bool icmp4_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH ||
	       type == ICMP_REDIRECT || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/*
 * __pkt_parse_icmp4_inner reads the IPv4 header and the first 8 L4 bytes the
 * ICMP error at @off quotes. Uses bpf_skb_load_bytes: two variable header
 * lengths in a row are beyond what direct packet access proves easily.
 * Returns 0 or DROP_CT_INVALID_HDR.
 */
static __always_inline int __pkt_parse_icmp4_inner(struct __sk_buff *skb, __u32 off, struct pkt4 *p)
{
	struct iphdr ip;
	__u8 l4[8];
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return DROP_CT_INVALID_HDR;
	ihl = (__u32)ip.ihl << 2;
	if (ip.version != 4 || ihl < sizeof(ip))
		return DROP_CT_INVALID_HDR;
	if (bpf_skb_load_bytes(skb, off + ihl, l4, sizeof(l4)) < 0)
		return DROP_CT_INVALID_HDR;
	p->inner_saddr = ip.saddr;
	p->inner_daddr = ip.daddr;
	p->inner_proto = ip.protocol;
	switch (ip.protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		__builtin_memcpy(&p->inner_sport, &l4[0], 2);
		__builtin_memcpy(&p->inner_dport, &l4[2], 2);
		break;
	case IPPROTO_ICMP:
		/* The quoted packet is an echo request or reply: same rule as
		 * for the outer tuple. */
		if (l4[0] == ICMP_ECHO) {
			__builtin_memcpy(&p->inner_sport, &l4[4], 2);
			p->inner_dport = 0;
		} else if (l4[0] == ICMP_ECHOREPLY) {
			p->inner_sport = 0;
			__builtin_memcpy(&p->inner_dport, &l4[4], 2);
		} else {
			p->inner_sport = 0;
			p->inner_dport = 0;
		}
		break;
	default:
		p->inner_sport = 0;
		p->inner_dport = 0;
	}
	p->flags |= PKT_F_ICMP_ERROR;
	return 0;
}

/*
 * pkt_parse4 parses the Ethernet + IPv4 + L4 headers of @skb into @p.
 * The caller has checked skb->protocol == ETH_P_IP.
 * Returns 0, or DROP_INVALID (bad IPv4 header), DROP_FRAG_NOSUPPORT (a
 * non-first fragment: it has no L4 header to match policy on), or
 * DROP_CT_INVALID_HDR (truncated L4 header).
 */
static __always_inline int pkt_parse4(struct __sk_buff *skb, struct pkt4 *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip;
	struct l4_ports *ports;
	__u8 *l4;
	__u32 ihl;

	if (data + PKT_PULL_LEN > data_end && skb->len > (__u32)(data_end - data)) {
		bpf_skb_pull_data(skb, skb->len < PKT_PULL_LEN ? skb->len : PKT_PULL_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return DROP_INVALID;
	ihl = (__u32)ip->ihl << 2;
	if (ip->version != 4 || ihl < sizeof(*ip))
		return DROP_INVALID;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->len = skb->len;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return DROP_FRAG_NOSUPPORT;

	l4 = (__u8 *)ip + ihl;
	switch (p->proto) {
	case IPPROTO_TCP:
		/* sport, dport, seq, ack, doff/flags: 14 bytes. */
		if ((void *)(l4 + 14) > data_end)
			return DROP_CT_INVALID_HDR;
		p->tcp_flags = l4[13];
		/* fallthrough */
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		ports = (struct l4_ports *)l4;
		if ((void *)(ports + 1) > data_end)
			return DROP_CT_INVALID_HDR;
		p->sport = ports->sport;
		p->dport = ports->dport;
		p->policy_port = ports->dport;
		break;
	case IPPROTO_ICMP: {
		struct icmphdr *icmp = (struct icmphdr *)l4;

		if ((void *)(icmp + 1) > data_end)
			return DROP_CT_INVALID_HDR;
		p->icmp_type = icmp->type;
		p->policy_port = bpf_htons((__u16)icmp->type);
		if (icmp->type == ICMP_ECHO) {
			p->sport = icmp->un.echo.id;
		} else if (icmp->type == ICMP_ECHOREPLY) {
			p->dport = icmp->un.echo.id;
		} else if (icmp4_is_error(icmp->type)) {
			return __pkt_parse_icmp4_inner(skb, ETH_HLEN + ihl + sizeof(*icmp), p);
		}
		break;
	}
	default:
		/* Other protocols have no ports: only protocol (or any)
		 * policy entries can match them. */
		break;
	}
	return 0;
}

#endif /* __MBR_PKT_H */
