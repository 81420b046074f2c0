/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Runtime configuration: one entry, written by the agent (src/datapath/
 * config-map.ts) between load and attach and whenever a setting changes; the
 * programs read it on every packet, so toggling audit mode needs no reload.
 */
#ifndef __MBR_CONFIG_H
#define __MBR_CONFIG_H

#include "common.h"

#define CFG_F_AUDIT		0x01	/* global audit: would-be policy drops pass, verdict AUDIT */
#define CFG_F_NO_FLOW_EVENTS	0x02	/* emit events for drops only, not for allowed new flows */

/*
 * struct config_entry: value of mbr_config_v1[0]. All fields host byte order.
 *
 *   off size field
 *     0    4 flags           CFG_F_*
 *     4    4 events_per_sec  token-bucket refill rate for verdict events, per
 *                            CPU; 0 = unlimited (events.h)
 *     8    4 events_burst    bucket size; 0 = events_per_sec (one second)
 *    12    4 host_identity   identity of node-originated packets whose source
 *                            address is not in ipcache; 0 = IDENTITY_HOST
 *   size 16
 */
struct config_entry {
	__u32 flags;
	__u32 events_per_sec;
	__u32 events_burst;
	__u32 host_identity;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config_entry);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mbr_config_v1 SEC(".maps");

/* config_get returns the configuration; never NULL in practice (an array
 * slot always exists), but the verifier wants the check. */
static __always_inline const struct config_entry *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mbr_config_v1, &zero);
}

static __always_inline __u32 config_host_identity(const struct config_entry *cfg)
{
	return cfg->host_identity ? cfg->host_identity : IDENTITY_HOST;
}

#endif /* __MBR_CONFIG_H */
