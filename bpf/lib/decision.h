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
 *
 * Every program follows the same order:
 *  1. read the policy revision (decision_init), before any map the decision
 *     depends on (polrev.h rule 3);
 *  2. parse, find the endpoint(s), classify with conntrack; replies and
 *     related packets pass (decision_known);
 *  3. a forward packet of an established flow whose entry cached a decision
 *     at this revision, for this hook, reuses it (decision_cached);
 *  4. otherwise the full check: ipcache, policy of each side,
 *     decision_finish (which caches the outcome in conntrack).
 */
#ifndef __MBR_DECISION_H
#define __MBR_DECISION_H

#include "common.h"
#include "pkt.h"
#include "config.h"
#include "ipcache.h"
#include "endpoints.h"
#include "policy.h"
#include "polrev.h"
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
	__u64 rev;			/* policy revision, read before any other map */
	__u32 ct;			/* enum ct_state */
	__u32 dec_ifindex;		/* ct_entry.dec_ifindex of this hook */
	__u8 dec_flags;			/* CT_DEC_F_*: this hook's OBS_* and origin */
	__u8 dir;			/* DIR_* for metrics: EGRESS from a pod, INGRESS to one */
};

/*
 * decision_init prepares @d for @skb seen at @obs_point and reads the policy
 * revision: call it before looking up the endpoint, the config or ipcache.
 */
static __always_inline void decision_init(struct __sk_buff *skb, struct decision *d, __u8 obs_point, __u8 dir)
{
	d->rev = polrev_get();
	d->dec_flags = obs_point;
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
 * decision_cached is the established-flow fast path (conntrack.h "Cached
 * decision"): it applies the decision the flow's entry cached, without
 * ipcache or policy lookups, when
 *  1. the packet is a forward packet of an established flow (CT_ESTABLISHED);
 *  2. it is not a TCP SYN (decision_finish reports a SYN as a new flow with an
 *     event; the fast path emits none);
 *  3. the entry holds a decision made by this hook (dec_ifindex, OBS_* point,
 *     origin) at the current policy revision;
 *  4. for a redirect, the proxy socket is found and, for UDP, the original
 *     destination recorded (else the full check runs again and drops with
 *     its reason and event).
 * Then, as decision_finish would: redirect or mark decided, refresh
 * conntrack, count. Set d->dec_ifindex (and CT_DEC_F_NODE) first.
 * Returns true when the packet passed this way, false when the caller must
 * run the full check.
 */
static __always_inline bool decision_cached(struct __sk_buff *skb, struct decision *d)
{
	const struct pkt4 *p = &d->pkt;
	struct ct_entry *e = d->ct_entry;
	__u8 ct_flags = 0, verdict;
	__u16 proxy_port;
	__u64 dec;

	/* 1. */
	if (d->ct != CT_ESTABLISHED || !e)
		return false;
	/* 2. */
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return false;
	/* 3. */
	dec = ct_dec_get(e, d->dec_ifindex, d->rev, d->dec_flags);
	if (!dec)
		return false;
	/* 4. (the source identity is the one the entry's last full check saw) */
	proxy_port = ct_dec_proxy_port(dec);
	if (proxy_port) {
		if (IS_ERR(proxy_redirect4(skb, p, proxy_port, e->src_identity)))
			return false;
	} else if (d->ev.obs_point != OBS_TO_CONTAINER) {
		skb->mark = MARK_MAGIC_DECIDED;
	}
	if (ct_dec_flags(dec) & CT_DEC_F_AUDIT) {
		ct_flags |= CT_F_AUDITED;
		verdict = VERDICT_AUDIT;
	} else {
		verdict = proxy_port ? VERDICT_REDIRECTED : VERDICT_FORWARDED;
	}
	ct_refresh4(e, p, d->now, proxy_port, ct_flags);
	metrics_update(0, d->dir, verdict, p->len);
	return true;
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
 *  4. conntrack is created or refreshed with the outcome cached at the
 *     revision read in decision_init, the packet is marked decided (decision
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
		ret = proxy_redirect4(skb, p, proxy_port, d->ev.src_identity);
		if (IS_ERR(ret))
			return ret;
		d->ev.proxy_port = proxy_port;
	}

	/* 4. */
	new_flow = d->ct == CT_NEW ||
		   (p->proto == IPPROTO_TCP &&
		    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN);
	ret = ct_update4(p, d->ct_entry, d->now, d->ev.src_identity, proxy_port, ct_flags,
			 ct_dec_make(d->rev, proxy_port, d->dec_flags | (audited ? CT_DEC_F_AUDIT : 0)),
			 d->dec_ifindex);
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
