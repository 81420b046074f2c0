/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Programs for the node's outside-facing interfaces.
 *
 *   mbr_from_netdev  tc INGRESS of an uplink (`membrane agent --uplink IF`):
 *                    traffic from outside the node. The decision point for
 *                    local endpoints' ingress from outside.
 *
 * Attached by src/datapath/loader.ts; one drop exit.
 */
#include "common.h"
#include "decision.h"

/*
 * handle_ipv4_from_netdev: only packets to a local endpoint are ours; the
 * rest (the node's own traffic) passes untouched. Replies/related packets of
 * known flows pass; established flows may reuse their cached decision
 * (decision_cached; it depends on no ifindex: dec_ifindex 0); the rest is
 * checked against the destination endpoint's
 * INGRESS policy with the source identity from ipcache (miss = world).
 * Returns CTX_ACT_OK or a DROP_* code.
 */
static __always_inline int handle_ipv4_from_netdev(struct __sk_buff *skb, const struct config_entry *cfg,
						   struct decision *d)
{
	const struct ipcache_entry *dst, *src;
	const struct endpoint_info *ep;
	__u32 proxy_identity;
	int ret;

	ret = decision_parse4(skb, d);
	if (ret == DROP_INVALID)
		return CTX_ACT_OK;	/* no usable IPv4 header: the stack judges it */
	dst = ipcache_lookup4(d->pkt.daddr);
	if (!dst || !dst->ep_id)
		return CTX_ACT_OK;	/* not for a local endpoint */
	ep = endpoint_lookup(dst->ifindex);
	if (!ep)
		return CTX_ACT_OK;	/* endpoint not enforced by us */
	d->ev.dst_identity = dst->identity;
	d->ev.dst_ep = dst->ep_id;
	if (IS_ERR(ret))
		return ret;

	if (proxy_marked(skb, &proxy_identity))
		return decision_known(skb, d, false);

	d->ct = ct_lookup4(&d->pkt, d->now, &d->ct_entry);
	if (d->ct == CT_REPLY || d->ct == CT_RELATED)
		return decision_known(skb, d, true);
	if (decision_cached(skb, d))
		return CTX_ACT_OK;

	src = ipcache_lookup4(d->pkt.saddr);
	d->ev.src_identity = ipcache_identity(src);
	d->ev.src_ep = src ? src->ep_id : 0;

	policy_can_ingress4(ep, d->ev.src_identity, d->pkt.proto, d->pkt.policy_port,
			    cfg->flags & CFG_F_AUDIT, &d->ingress);
	return decision_finish(skb, d, cfg);
}

/* Attached to tc ingress of an uplink interface. */
SEC("tc")
int mbr_from_netdev(struct __sk_buff *skb)
{
	const struct config_entry *cfg = NULL;
	struct decision d = {};
	int ret;

	/* ARP and non-IPv4 belong to the node (IPv4 only for now). */
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;

	/* Reads the policy revision: before the config and ipcache. */
	decision_init(skb, &d, OBS_FROM_NETDEV, DIR_INGRESS);
	cfg = config_get();
	if (!cfg) {
		ret = DROP_NO_CONFIG;
		goto drop;
	}
	ret = handle_ipv4_from_netdev(skb, cfg, &d);
	if (!IS_ERR(ret))
		return CTX_ACT_OK;
drop:
	return decision_drop(skb, &d, cfg, ret);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
