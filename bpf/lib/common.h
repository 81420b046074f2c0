/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Common definitions: kernel headers, reserved identities, skb mark magic,
 * verdicts and observation points shared by every other header.
 *
 * Numbers here are mirrored in src/datapath/layout.ts (MARK_*, IDENTITY_*,
 * VERDICT_*, OBS_*); test/unit/datapath/layout.test.ts parses this file.
 */
#ifndef __MBR_COMMON_H
#define __MBR_COMMON_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "drop_reasons.h"

#ifndef likely
#define likely(x)	__builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x)	__builtin_expect(!!(x), 0)
#endif

/* linux/ip.h keeps these for the kernel only. */
#ifndef IP_MF
#define IP_MF		0x2000
#endif
#ifndef IP_OFFSET
#define IP_OFFSET	0x1fff
#endif

#define CTX_ACT_OK	TC_ACT_OK
#define CTX_ACT_DROP	TC_ACT_SHOT

#define NSEC_PER_SEC	1000000000ULL

/* Reserved identities (reference/cilium-semantics.md §2.9). */
#define IDENTITY_ANY	0	/* in policy keys: any peer */
#define IDENTITY_HOST	1	/* reserved:host, the node itself */
#define IDENTITY_WORLD	2	/* reserved:world, any address not in ipcache */

/*
 * skb->mark magic. The 0xf00 nibble says who marked the packet; the upper
 * 16 bits may carry an identity (proxy) or a port (to-proxy).
 *
 *  MARK_MAGIC_TO_PROXY  0x0200 | proxy_port << 16
 *      Set by proxy.h after bpf_sk_assign. The node namespace routes it to the
 *      local stack: `ip rule add fwmark 0x200/0xf00 lookup 2004` and
 *      `ip route add local 0.0.0.0/0 dev lo table 2004`.
 *  MARK_MAGIC_PROXY     0x0a00 | source identity << 16
 *      Set by the proxy (SO_MARK on its upstream sockets). Such packets were
 *      already decided at the decision point that redirected them: no program
 *      enforces or redirects them again.
 *  MARK_MAGIC_DECIDED   0x0d00
 *      Set by a decision point (from_container, from_netdev) on a packet it
 *      allowed after evaluating every side that applies. to_container lets it
 *      through without a second lookup. Marks are scrubbed when a packet
 *      crosses a network namespace, so a pod cannot forge it.
 */
#define MARK_MAGIC_MASK		0x0f00
#define MARK_MAGIC_TO_PROXY	0x0200
#define MARK_MAGIC_PROXY	0x0a00
#define MARK_MAGIC_DECIDED	0x0d00
#define MARK_IDENTITY_SHIFT	16

/* Flow verdicts, Hubble numbering (reference §6.3). */
#define VERDICT_FORWARDED	1
#define VERDICT_DROPPED		2
#define VERDICT_AUDIT		4
#define VERDICT_REDIRECTED	5

/* Where a packet was observed (the program that saw it). */
#define OBS_FROM_CONTAINER	1	/* bpf_lxc.c mbr_from_container: pod veth, tc ingress */
#define OBS_TO_CONTAINER	2	/* bpf_lxc.c mbr_to_container: pod veth, tc egress */
#define OBS_FROM_NETDEV		3	/* bpf_host.c mbr_from_netdev: uplink, tc ingress */

/* Directions, as in policy keys and metrics. */
#define DIR_INGRESS	0
#define DIR_EGRESS	1

#endif /* __MBR_COMMON_H */
