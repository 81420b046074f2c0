/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Decision: the shared tail of every program. Given a parsed packet, the
 * conntrack state and the policy result of each side, decide pass / redirect
 * / drop, record the flow in conntrack, count it and emit its event.
 *
 * A packet is decided where it enters the node (DESIGN §4): from_container
 * decides the source's egress and, for a local destination, the
 * destination's ingress; from_netdev decides a local destination's ingress;
 * to_container decides ingress only for what reached the pod without passing
 * a decision point. Both sides are always evaluated when they apply, even
 * when the first one drops, so the event can show both.
 */
#ifndef __MBR_DECISION_H
#define __MBR_DECISION_H

#include "common.h"
#include "pkt.h"
#include "config.h"
#include "ipcache.h"
#include "endpoints.h"
#include "policy.h"
#include "conntrack.h"
#include "metrics.h"
#include "events.h"
#include "proxy.h"

struct decision {
	struct pkt4 pkt;
	struct verdict_event ev;
	struct policy_side egress;	/* of the source endpoint */
	struct policy_side ingress;	/* of the destination endpoint */
	struct ct_entry *ct_entry;	/* CT_ESTABLISHED: the flow's entry */
	__u64 now;
	__u32 ct;			/* enum ct_state */
	__u8 dir;			/* DIR_* for metrics: EGRESS from a pod, INGRESS to one */
};

/* decision_init prepares @d for @skb seen at @obs_point. */
static __always_inline void decision_init(struct __sk_buff *skb, struct decision *d, __u8 obs_point, __u8 dir)
{
	d->now = bpf_ktime_get_ns();
	d->dir = dir;
	d->ev.ts_ns = d->now;
	d->ev.obs_point = obs_point;
	d->ev.ifindex = skb->ifindex;
}

/* decision_parse4 parses the packet and copies its tuple into the event. */
static __always_inline int decision_parse4(struct __sk_buff *skb, struct decision *d)
{
	int ret = pkt_parse4(skb, &d->pkt);

	d->ev.saddr = d->pkt.saddr;
	d->ev.daddr = d->pkt.daddr;
	d->ev.proto = d->pkt.proto;
	d->ev.sport = d->pkt.proto == IPPROTO_ICMP ? 0 : d->pkt.sport;
	d->ev.dport = d->pkt.policy_port;
	return ret;
}

/* decision_known passes a reply or related packet of a known flow (no policy,
 * no event), counting it. @decided: mark it for to_container. */
static __always_inline int decision_known(struct __sk_buff *skb, struct decision *d, bool decided)
{
	if (decided)
		skb->mark = MARK_MAGIC_DECIDED;
	metrics_update(0, d->dir, VERDICT_FORWARDED, d->pkt.len);
	return CTX_ACT_OK;
}

/*
 * decision_finish combines the sides into the packet's fate:
 *  1. a side that denies and is not audited drops the packet (the egress
 *     side's reason first);
 *  2. otherwise it passes; if a side was audited the verdict is AUDIT and the
 *     event carries the reason audit mode overrode;
 *  3. a redirect (egress proxy port first, else ingress) hands it to the proxy
 *     (fail closed: no proxy socket drops it; to_container cannot redirect,
 *     bpf_sk_assign needs tc ingress);
 *  4. conntrack is created or refreshed, the packet is marked decided (decision
 *     points only), counted, and a new flow emits an event.
 * Returns CTX_ACT_OK or a DROP_* code for the caller's drop exit.
 */
static __always_inline int decision_finish(struct __sk_buff *skb, struct decision *d,
					   const struct config_entry *cfg)
{
	const struct pkt4 *p = &d->pkt;
	__u16 proxy_port;
	bool audited, new_flow;
	__u8 ct_flags = 0;
	int ret;

	d->ev.egress_result = d->egress.result;
	d->ev.ingress_result = d->ingress.result;
	d->ev.egress_match = d->egress.match;
	d->ev.ingress_match = d->ingress.match;
	d->ev.egress_cookie = d->egress.cookie;
	d->ev.ingress_cookie = d->ingress.cookie;

	/* 1. */
	if (IS_ERR(d->egress.ret) && !(d->egress.result & SIDE_F_AUDITED))
		return d->egress.ret;
	if (IS_ERR(d->ingress.ret) && !(d->ingress.result & SIDE_F_AUDITED))
		return d->ingress.ret;

	/* 2. */
	audited = (d->egress.result | d->ingress.result) & SIDE_F_AUDITED;
	if (audited) {
		d->ev.drop_reason = IS_ERR(d->egress.ret) ? d->egress.ret : d->ingress.ret;
		ct_flags |= CT_F_AUDITED;
	}

	/* 3. */
	proxy_port = d->egress.proxy_port ? d->egress.proxy_port : d->ingress.proxy_port;
	if (proxy_port) {
		if (d->ev.obs_point == OBS_TO_CONTAINER)
			return DROP_PROXY_SET_FAILED;
		ret = proxy_redirect4(skb, p, proxy_port);
		if (IS_ERR(ret))
			return ret;
		d->ev.proxy_port = proxy_port;
	}

	/* 4. */
	new_flow = d->ct == CT_NEW ||
		   (p->proto == IPPROTO_TCP &&
		    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN);
	ret = ct_update4(p, d->ct_entry, d->now, d->ev.src_identity, proxy_port, ct_flags);
	if (IS_ERR(ret))
		return ret;
	if (!proxy_port && d->ev.obs_point != OBS_TO_CONTAINER)
		skb->mark = MARK_MAGIC_DECIDED;
	d->ev.verdict = audited ? VERDICT_AUDIT : proxy_port ? VERDICT_REDIRECTED : VERDICT_FORWARDED;
	metrics_update(0, d->dir, d->ev.verdict, p->len);
	if (new_flow && !(cfg->flags & CFG_F_NO_FLOW_EVENTS)) {
		d->ev.flags |= EV_F_NEW_FLOW;
		events_send(cfg, &d->ev, d->dir);
	}
	return CTX_ACT_OK;
}

/*
 * decision_drop is the one drop exit of every program: count, emit the drop
 * event (rate-limited; not when the configuration is unavailable) and drop.
 */
static __always_inline int decision_drop(struct __sk_buff *skb, struct decision *d,
					 const struct config_entry *cfg, int reason)
{
	d->ev.verdict = VERDICT_DROPPED;
	d->ev.drop_reason = reason;
	metrics_update(reason, d->dir, VERDICT_DROPPED, skb->len);
	if (cfg)
		events_send(cfg, &d->ev, d->dir);
	return CTX_ACT_DROP;
}

#endif /* __MBR_DECISION_H */
