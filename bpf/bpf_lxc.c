/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Programs for a local endpoint's host-side veth (the pod's "lxc" device).
 *
 *   mbr_from_container  tc INGRESS of the veth: packets leaving the pod.
 *                       The decision point for pod traffic.
 *   mbr_to_container    tc EGRESS of the veth: packets going into the pod.
 *
 * Attached by src/datapath/loader.ts (`attach(ifname, 'ingress'|'egress')`)
 * for every plumbed endpoint; both leave through one drop exit.
 */
#include "common.h"
#include "decision.h"

/*
 * handle_ipv4_from_lxc: a packet from local endpoint @src_ep.
 *  - the proxy's own traffic and replies/related packets of known flows pass;
 *  - a forward packet of an established flow whose decision is cached at the
 *    current policy revision for this veth reuses it (decision_cached);
 *  - otherwise the destination identity comes from ipcache (miss = world) and
 *    the source's EGRESS policy is evaluated, plus, when the destination is a
 *    local endpoint, that endpoint's INGRESS policy with the source identity
 *    as peer: both sides are decided here, where the packet enters the node.
 */
static __always_inline int handle_ipv4_from_lxc(struct __sk_buff *skb, const struct endpoint_info *src_ep,
						const struct config_entry *cfg, struct decision *d)
{
	const struct ipcache_entry *dst;
	const struct endpoint_info *dst_ep = NULL;
	bool audit = cfg->flags & CFG_F_AUDIT;
	__u32 proxy_identity;
	int ret;

	ret = decision_parse4(skb, d);
	d->ev.src_identity = src_ep->identity;
	d->ev.src_ep = src_ep->ep_id;
	if (IS_ERR(ret))
		return ret;

	/* Marks are scrubbed when a packet leaves the pod's namespace, so this
	 * only matters for a proxy running inside the pod; kept for symmetry. */
	if (proxy_marked(skb, &proxy_identity))
		return decision_known(skb, d, false);

	d->ct = ct_lookup4(&d->pkt, d->now, &d->ct_entry);
	if (d->ct == CT_REPLY || d->ct == CT_RELATED)
		return decision_known(skb, d, true);

	/* The decision depends on the source veth (its endpoint's egress). */
	d->dec_ifindex = skb->ingress_ifindex;
	if (decision_cached(skb, d))
		return CTX_ACT_OK;

	dst = ipcache_lookup4(d->pkt.daddr);
	d->ev.dst_identity = ipcache_identity(dst);
	if (dst && dst->ep_id) {
		d->ev.dst_ep = dst->ep_id;
		dst_ep = endpoint_lookup(dst->ifindex);
	}

	policy_can_egress4(src_ep, d->ev.dst_identity, d->pkt.proto, d->pkt.policy_port, audit, &d->egress);
	if (dst_ep)
		policy_can_ingress4(dst_ep, src_ep->identity, d->pkt.proto, d->pkt.policy_port, audit,
				    &d->ingress);
	return decision_finish(skb, d, cfg);
}

/*
 * handle_ipv4_to_lxc: a packet to local endpoint @ep that no decision point
 * decided (from the node itself, or from an interface without
 * mbr_from_netdev; packets marked decided never get here). The proxy's upstream traffic
 * (recorded in conntrack so the endpoint's replies pass) and replies/related
 * packets of known flows pass; established flows may reuse their cached
 * decision (decision_cached); the rest is checked against the endpoint's
 * INGRESS policy with the source identity from ipcache (miss: the node's
 * identity for locally generated packets, world otherwise).
 */
static __always_inline int handle_ipv4_to_lxc(struct __sk_buff *skb, const struct endpoint_info *ep,
					      const struct config_entry *cfg, struct decision *d)
{
	const struct ipcache_entry *src;
	__u32 proxy_identity;
	int ret;

	ret = decision_parse4(skb, d);
	d->ev.dst_identity = ep->identity;
	d->ev.dst_ep = ep->ep_id;
	if (IS_ERR(ret))
		return ret;

	/* The decision depends on the destination veth and, on an ipcache miss,
	 * on whether the node itself sent the packet. */
	d->dec_ifindex = skb->ifindex;
	if (!skb->ingress_ifindex)
		d->dec_flags |= CT_DEC_F_NODE;

	d->ct = ct_lookup4(&d->pkt, d->now, &d->ct_entry);
	if (proxy_marked(skb, &proxy_identity)) {
		/* No policy decision: nothing to cache (dec 0). */
		ret = ct_update4(&d->pkt, d->ct == CT_ESTABLISHED ? d->ct_entry : NULL, d->now,
				 proxy_identity, 0, CT_F_FROM_PROXY, 0, d->dec_ifindex);
		if (IS_ERR(ret))
			return ret;
		return decision_known(skb, d, false);
	}
	if (d->ct == CT_REPLY || d->ct == CT_RELATED)
		return decision_known(skb, d, false);
	if (decision_cached(skb, d))
		return CTX_ACT_OK;

	src = ipcache_lookup4(d->pkt.saddr);
	if (src) {
		d->ev.src_identity = src->identity;
		d->ev.src_ep = src->ep_id;
	} else {
		/* skb_iif is 0 for packets the node itself generated. */
		d->ev.src_identity = skb->ingress_ifindex ? IDENTITY_WORLD : config_host_identity(cfg);
	}

	policy_can_ingress4(ep, d->ev.src_identity, d->pkt.proto, d->pkt.policy_port,
			    cfg->flags & CFG_F_AUDIT, &d->ingress);
	return decision_finish(skb, d, cfg);
}

/* Attached to tc ingress of a local endpoint's host-side veth. */
SEC("tc")
int mbr_from_container(struct __sk_buff *skb)
{
	const struct config_entry *cfg = NULL;
	const struct endpoint_info *ep;
	struct decision d = {};
	int ret;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return CTX_ACT_OK;
	/* Reads the policy revision: before the endpoint and config. */
	decision_init(skb, &d, OBS_FROM_CONTAINER, DIR_EGRESS);
	/* On tc ingress ingress_ifindex is the veth itself. */
	ep = endpoint_lookup(skb->ingress_ifindex);
	if (!ep)
		return CTX_ACT_OK;	/* not a Membrane endpoint */

	cfg = config_get();
	if (!cfg) {
		ret = DROP_NO_CONFIG;
		goto drop;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		ret = DROP_UNKNOWN_L3;	/* IPv4 only for now */
		goto drop;
	}
	ret = handle_ipv4_from_lxc(skb, ep, cfg, &d);
	if (!IS_ERR(ret))
		return CTX_ACT_OK;
drop:
	return decision_drop(skb, &d, cfg, ret);
}

/* Attached to tc egress of a local endpoint's host-side veth. */
SEC("tc")
int mbr_to_container(struct __sk_buff *skb)
{
	const struct config_entry *cfg = NULL;
	const struct endpoint_info *ep;
	struct decision d = {};
	int ret;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return CTX_ACT_OK;
	/* Decided where it entered the node (from_container, from_netdev):
	 * nothing left to check. Before any other work: the common case. */
	if ((skb->mark & MARK_MAGIC_MASK) == MARK_MAGIC_DECIDED)
		return CTX_ACT_OK;
	/* Reads the policy revision: before the endpoint and config. */
	decision_init(skb, &d, OBS_TO_CONTAINER, DIR_INGRESS);
	ep = endpoint_lookup(skb->ifindex);
	if (!ep)
		return CTX_ACT_OK;	/* not a Membrane endpoint */

	cfg = config_get();
	if (!cfg) {
		ret = DROP_NO_CONFIG;
		goto drop;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		ret = DROP_UNKNOWN_L3;
		goto drop;
	}
	ret = handle_ipv4_to_lxc(skb, ep, cfg, &d);
	if (!IS_ERR(ret))
		return CTX_ACT_OK;
drop:
	return decision_drop(skb, &d, cfg, ret);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
