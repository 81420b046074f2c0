/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Metrics: per-CPU packet and byte counters by (reason, direction, verdict).
 * Counted for every packet a program decides, whether or not an event is
 * emitted; userspace sums the per-CPU values.
 */
#ifndef __MBR_METRICS_H
#define __MBR_METRICS_H

#include "common.h"

/* Pseudo verdicts for event accounting (metrics_key.verdict). */
#define METRIC_EVENT_RATE_LIMITED	100	/* an event the token bucket suppressed */
#define METRIC_EVENT_LOST		101	/* ring buffer full */

/*
 * struct metrics_key: key of mbr_metrics_v1. Host order.
 *
 *   off size field
 *     0    2 reason   0 for passed packets, else -DROP_* (e.g. 133)
 *     2    1 dir      DIR_INGRESS (to the endpoint) | DIR_EGRESS (from it)
 *     3    1 verdict  VERDICT_* or METRIC_EVENT_*
 *   size 4
 *
 * struct metrics_entry: value (one per CPU).
 *
 *   off size field
 *     0    8 packets
 *     8    8 bytes    skb->len sum
 *   size 16
 */
struct metrics_key {
	__u16 reason;
	__u8 dir;
	__u8 verdict;
};

struct metrics_entry {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_entry);
	__uint(max_entries, 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_metrics_v1 SEC(".maps");

static __always_inline void metrics_update(int reason, __u8 dir, __u8 verdict, __u32 len)
{
	struct metrics_key key = {
		.reason = (__u16)(reason < 0 ? -reason : reason),
		.dir = dir,
		.verdict = verdict,
	};
	struct metrics_entry *m = bpf_map_lookup_elem(&mbr_metrics_v1, &key);

	if (m) {
		m->packets += 1;
		m->bytes += len;
	} else {
		struct metrics_entry fresh = { .packets = 1, .bytes = len };

		bpf_map_update_elem(&mbr_metrics_v1, &key, &fresh, BPF_NOEXIST);
	}
}

#endif /* __MBR_METRICS_H */
