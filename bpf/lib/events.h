/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Verdict events: one fixed-size record per new flow and per drop, through a
 * ring buffer read by src/datapath/ringbuf.ts, rate-limited per CPU by a
 * token bucket configured in mbr_config_v1.
 */
#ifndef __MBR_EVENTS_H
#define __MBR_EVENTS_H

#include "common.h"
#include "config.h"
#include "metrics.h"

#define EV_F_IS_REPLY	0x01	/* the packet is a reply of a known flow */
#define EV_F_NEW_FLOW	0x02	/* conntrack created the flow (or TCP SYN) */
#define EV_F_RELATED	0x04	/* ICMP error related to a known flow */
#define EV_F_FROM_PROXY	0x08	/* the proxy's upstream traffic (MARK_MAGIC_PROXY) */

/*
 * struct verdict_event: one ring buffer record. Addresses and ports network
 * order, everything else host order.
 *
 *   off size field
 *     0    8 ts_ns           bpf_ktime_get_ns() (CLOCK_MONOTONIC)
 *     8    4 saddr           network order
 *    12    4 daddr           network order
 *    16    2 sport           network order; 0 for ICMP
 *    18    2 dport           network order; ICMP: the type (as in policy keys)
 *    20    1 proto           IPPROTO_*
 *    21    1 verdict         VERDICT_* (FORWARDED, DROPPED, AUDIT, REDIRECTED)
 *    22    1 flags           EV_F_*
 *    23    1 obs_point       OBS_* (which program saw the packet)
 *    24    4 drop_reason     DROP_* (negative) or 0; with AUDIT: the reason
 *                            audit mode overrode
 *    28    4 src_identity
 *    32    4 dst_identity
 *    36    4 src_ep          local endpoint id of the source, 0 = not local
 *    40    4 dst_ep          local endpoint id of the destination, 0 = not local
 *    44    4 egress_cookie   policy_entry.cookie that decided the source's egress
 *    48    4 ingress_cookie  policy_entry.cookie that decided the destination's ingress
 *    52    4 ifindex         skb->ifindex of the hook
 *    56    2 proxy_port      host order, the port the flow was redirected to, 0 = none
 *    58    1 egress_result   SIDE_* | SIDE_F_AUDITED (policy.h)
 *    59    1 ingress_result  SIDE_* | SIDE_F_AUDITED
 *    60    1 egress_match    MATCH_* (policy.h)
 *    61    1 ingress_match   MATCH_*
 *    62    2 pad             zero
 *   size 64
 */
struct verdict_event {
	__u64 ts_ns;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 verdict;
	__u8 flags;
	__u8 obs_point;
	__s32 drop_reason;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 src_ep;
	__u32 dst_ep;
	__u32 egress_cookie;
	__u32 ingress_cookie;
	__u32 ifindex;
	__u16 proxy_port;
	__u8 egress_result;
	__u8 ingress_result;
	__u8 egress_match;
	__u8 ingress_match;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_events_v1 SEC(".maps");

/*
 * struct evrate_state: value of mbr_evrate_v1 (PERCPU_ARRAY[1]), the token
 * bucket of this CPU. Host order.
 *
 *   off size field
 *     0    8 last_ns  time of the last refill
 *     8    8 tokens   available tokens in units of 1e-9 event
 *   size 16
 */
struct evrate_state {
	__u64 last_ns;
	__u64 tokens;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct evrate_state);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_evrate_v1 SEC(".maps");

/* Refill at most this much idle time, so elapsed * rate cannot overflow
 * (rates are capped at 1e8/s by the agent). */
#define EVRATE_MAX_IDLE_NS	(10ULL * NSEC_PER_SEC)

/*
 * events_allow says whether one more event may be sent now on this CPU.
 * Token bucket: refill events_per_sec per second up to events_burst (default
 * one second's worth), one event costs one token. Per CPU, without locks: the
 * state is per-CPU and a tc program is not preempted by itself on one CPU.
 */
static __always_inline bool events_allow(const struct config_entry *cfg, __u64 now)
{
	struct evrate_state *st;
	__u32 zero = 0;
	__u64 rate = cfg->events_per_sec, burst, elapsed;

	if (!rate)
		return true;
	st = bpf_map_lookup_elem(&mbr_evrate_v1, &zero);
	if (!st)
		return true;
	burst = (cfg->events_burst ? cfg->events_burst : rate) * NSEC_PER_SEC;
	elapsed = now - st->last_ns;
	if (elapsed > EVRATE_MAX_IDLE_NS)
		elapsed = EVRATE_MAX_IDLE_NS;
	st->tokens += elapsed * rate;
	if (st->tokens > burst)
		st->tokens = burst;
	st->last_ns = now;
	if (st->tokens < NSEC_PER_SEC)
		return false;
	st->tokens -= NSEC_PER_SEC;
	return true;
}

/* events_send emits @ev unless rate-limited; losses are counted in metrics. */
static __always_inline void events_send(const struct config_entry *cfg, struct verdict_event *ev,
					__u8 dir)
{
	if (!events_allow(cfg, ev->ts_ns)) {
		metrics_update(0, dir, METRIC_EVENT_RATE_LIMITED, 0);
		return;
	}
	if (bpf_ringbuf_output(&mbr_events_v1, ev, sizeof(*ev), 0) < 0)
		metrics_update(0, dir, METRIC_EVENT_LOST, 0);
}

#endif /* __MBR_EVENTS_H */
