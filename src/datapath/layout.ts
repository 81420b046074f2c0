// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath/layout
 * Sizes and field offsets of every C struct that crosses between the BPF programs (bpf/lib/*.h) and userspace,
 * plus the constants those structs carry. This file and the `*-map.ts` encoders are the only TypeScript that
 * knows byte layouts. test/unit/datapath/layout.test.ts compares every entry here with the C structs (via the
 * BTF of a compiled probe) and every constant with the headers' `#define`s.
 *
 * Map layout changes bump the map's version suffix (`mbr_policy_v1` → `_v2`), DESIGN §3.5.
 */

/** One mirrored C struct. */
export interface StructLayout {
  /** C struct name. */
  readonly cName: string;
  /** Header that defines it, relative to bpf/lib. */
  readonly header: string;
  /** sizeof. */
  readonly size: number;
  /** offsetof each member (C member names). */
  readonly fields: Readonly<Record<string, number>>;
}

function layout<F extends Record<string, number>>(cName: string, header: string, size: number, fields: F): StructLayout & { fields: F } {
  return { cName, header, size, fields };
}

/** Must match struct ipcache_key in bpf/lib/ipcache.h. */
export const IPCACHE_KEY = layout('ipcache_key', 'ipcache.h', 24, { prefixlen: 0, family: 4, pad: 5, addr: 8 });
/** Must match struct ipcache_entry in bpf/lib/ipcache.h. */
export const IPCACHE_ENTRY = layout('ipcache_entry', 'ipcache.h', 16, { identity: 0, ep_id: 4, ifindex: 8, flags: 12 });
/** Must match struct endpoint_info in bpf/lib/endpoints.h (the key of mbr_endpoint_v1 is a __u32 ifindex). */
export const ENDPOINT_INFO = layout('endpoint_info', 'endpoints.h', 12, { ep_id: 0, identity: 4, flags: 8 });
/** Must match struct policy_key in bpf/lib/policy.h. */
export const POLICY_KEY = layout('policy_key', 'policy.h', 16, { prefixlen: 0, ep_id: 4, sec_label: 8, egress: 12, protocol: 13, dport: 14 });
/** Must match struct policy_entry in bpf/lib/policy.h. */
export const POLICY_ENTRY = layout('policy_entry', 'policy.h', 8, { proxy_port: 0, deny: 2, lpm_prefix_len: 3, cookie: 4 });
/** Must match struct ct_key in bpf/lib/conntrack.h. */
export const CT_KEY = layout('ct_key', 'conntrack.h', 16, { saddr: 0, daddr: 4, sport: 8, dport: 10, proto: 12, pad: 13 });
/** Must match struct ct_entry in bpf/lib/conntrack.h (mbr_ct_v2; v1 was 16 bytes, without the cached decision). */
export const CT_ENTRY = layout('ct_entry', 'conntrack.h', 32, {
  last_seen_ns: 0, src_identity: 8, proxy_port: 12, flags: 14, pad: 15, decision: 16, dec_ifindex: 24, pad2: 28,
});
/** Must match struct polrev_entry in bpf/lib/polrev.h (the one value of mbr_polrev_v1). */
export const POLREV_ENTRY = layout('polrev_entry', 'polrev.h', 8, { revision: 0 });
/** Must match struct config_entry in bpf/lib/config.h. */
export const CONFIG_ENTRY = layout('config_entry', 'config.h', 16, { flags: 0, events_per_sec: 4, events_burst: 8, host_identity: 12 });
/** Must match struct metrics_key in bpf/lib/metrics.h. */
export const METRICS_KEY = layout('metrics_key', 'metrics.h', 4, { reason: 0, dir: 2, verdict: 3 });
/** Must match struct metrics_entry in bpf/lib/metrics.h. */
export const METRICS_ENTRY = layout('metrics_entry', 'metrics.h', 16, { packets: 0, bytes: 8 });
/** Must match struct evrate_state in bpf/lib/events.h. */
export const EVRATE_STATE = layout('evrate_state', 'events.h', 16, { last_ns: 0, tokens: 8 });
/** Must match struct verdict_event in bpf/lib/events.h. */
export const VERDICT_EVENT = layout('verdict_event', 'events.h', 64, {
  ts_ns: 0, saddr: 8, daddr: 12, sport: 16, dport: 18, proto: 20, verdict: 21, flags: 22, obs_point: 23,
  drop_reason: 24, src_identity: 28, dst_identity: 32, src_ep: 36, dst_ep: 40, egress_cookie: 44,
  ingress_cookie: 48, ifindex: 52, proxy_port: 56, egress_result: 58, ingress_result: 59, egress_match: 60,
  ingress_match: 61, pad: 62,
});

/** Must match struct proxy_orig_key in bpf/lib/proxy.h (key of mbr_origdst_v1). */
export const PROXY_ORIG_KEY = layout('proxy_orig_key', 'proxy.h', 8, { saddr: 0, sport: 4, proto: 6, pad: 7 });
/** Must match struct proxy_orig_entry in bpf/lib/proxy.h (value of mbr_origdst_v1). */
export const PROXY_ORIG_ENTRY = layout('proxy_orig_entry', 'proxy.h', 16, { daddr: 0, dport: 4, pad: 6, identity: 8, pad2: 12 });

/** Every mirrored struct, for the layout test. */
export const ALL_LAYOUTS: readonly StructLayout[] = [
  IPCACHE_KEY, IPCACHE_ENTRY, ENDPOINT_INFO, POLICY_KEY, POLICY_ENTRY, CT_KEY, CT_ENTRY, POLREV_ENTRY, CONFIG_ENTRY,
  METRICS_KEY, METRICS_ENTRY, EVRATE_STATE, VERDICT_EVENT, PROXY_ORIG_KEY, PROXY_ORIG_ENTRY,
];

/** Map names (kernel object names hold 15 characters), as in the headers. */
export const MAP_NAMES = {
  ipcache: 'mbr_ipcache_v1',
  endpoints: 'mbr_endpoint_v1',
  policy: 'mbr_policy_v1',
  ct: 'mbr_ct_v2',
  polrev: 'mbr_polrev_v1',
  events: 'mbr_events_v1',
  config: 'mbr_config_v1',
  evrate: 'mbr_evrate_v1',
  metrics: 'mbr_metrics_v1',
  /** Original destination of redirected UDP datagrams, by client address/port (bpf/lib/proxy.h). */
  proxyOrig: 'mbr_origdst_v1',
} as const;

/** Entry programs by object. */
export const PROGRAMS = {
  fromContainer: 'mbr_from_container',
  toContainer: 'mbr_to_container',
  fromNetdev: 'mbr_from_netdev',
} as const;

/**
 * Constants of bpf/lib/*.h (name → value, C names). The layout test checks each against its `#define`.
 * Grouped by header for reading; the test looks each name up in all headers.
 */
export const C_CONSTANTS = {
  // common.h
  IDENTITY_ANY: 0,
  IDENTITY_HOST: 1,
  IDENTITY_WORLD: 2,
  MARK_MAGIC_MASK: 0x0f00,
  MARK_MAGIC_TO_PROXY: 0x0200,
  MARK_MAGIC_PROXY: 0x0a00,
  MARK_MAGIC_DECIDED: 0x0d00,
  MARK_IDENTITY_SHIFT: 16,
  VERDICT_FORWARDED: 1,
  VERDICT_DROPPED: 2,
  VERDICT_AUDIT: 4,
  VERDICT_REDIRECTED: 5,
  OBS_FROM_CONTAINER: 1,
  OBS_TO_CONTAINER: 2,
  OBS_FROM_NETDEV: 3,
  DIR_INGRESS: 0,
  DIR_EGRESS: 1,
  // ipcache.h
  IPCACHE_FAMILY_IPV4: 4,
  IPCACHE_FAMILY_IPV6: 6,
  IPCACHE_PREFIX_HDR: 32,
  // endpoints.h
  EP_F_AUDIT: 0x01,
  EP_F_INGRESS_ENFORCED: 0x02,
  EP_F_EGRESS_ENFORCED: 0x04,
  // policy.h
  POLICY_PREFIX_EXACT_FIELDS: 72,
  POLICY_PREFIX_FULL: 96,
  SIDE_NOT_EVALUATED: 0,
  SIDE_NOT_ENFORCED: 1,
  SIDE_ALLOWED: 2,
  SIDE_REDIRECTED: 3,
  SIDE_DENIED: 4,
  SIDE_DEFAULT_DENIED: 5,
  SIDE_F_AUDITED: 0x80,
  MATCH_NONE: 0,
  MATCH_L3_ONLY: 1,
  MATCH_L3_L4: 2,
  MATCH_L4_ONLY: 3,
  MATCH_ALL: 4,
  MATCH_L3_PROTO: 5,
  MATCH_PROTO_ONLY: 6,
  // conntrack.h
  CT_F_PROXY_REDIRECT: 0x01,
  CT_F_CLOSING: 0x02,
  CT_F_SEEN_REPLY: 0x04,
  CT_F_FROM_PROXY: 0x08,
  CT_F_AUDITED: 0x10,
  CT_DEC_REV_BITS: 40,
  CT_DEC_PORT_SHIFT: 40,
  CT_DEC_FLAGS_SHIFT: 56,
  CT_DEC_F_OBS_MASK: 0x03,
  CT_DEC_F_AUDIT: 0x04,
  CT_DEC_F_NODE: 0x08,
  // config.h
  CFG_F_AUDIT: 0x01,
  CFG_F_NO_FLOW_EVENTS: 0x02,
  // metrics.h
  METRIC_EVENT_RATE_LIMITED: 100,
  METRIC_EVENT_LOST: 101,
  // events.h
  EV_F_IS_REPLY: 0x01,
  EV_F_NEW_FLOW: 0x02,
  EV_F_RELATED: 0x04,
  EV_F_FROM_PROXY: 0x08,
} as const;

/** Reserved identities (reference §2.9). */
export const Identity = { ANY: 0, HOST: 1, WORLD: 2 } as const;

/**
 * skb->mark magic (bpf/lib/common.h). The proxy sets `MARK_MAGIC_PROXY | identity << 16` as SO_MARK on its
 * upstream sockets so no program enforces them again; the node's `ip rule fwmark 0x200/0xf00 lookup 2004`
 * delivers `MARK_MAGIC_TO_PROXY` packets locally.
 */
export const Mark = {
  MASK: C_CONSTANTS.MARK_MAGIC_MASK,
  TO_PROXY: C_CONSTANTS.MARK_MAGIC_TO_PROXY,
  PROXY: C_CONSTANTS.MARK_MAGIC_PROXY,
  DECIDED: C_CONSTANTS.MARK_MAGIC_DECIDED,
  IDENTITY_SHIFT: C_CONSTANTS.MARK_IDENTITY_SHIFT,
} as const;

/** The SO_MARK value the proxy puts on an upstream socket that carries traffic of `identity`. */
export function proxyMark(identity: number): number {
  return ((identity & 0xffff) << Mark.IDENTITY_SHIFT | Mark.PROXY) >>> 0;
}

/** Endpoint flags (struct endpoint_info.flags). */
export const EndpointFlags = {
  AUDIT: C_CONSTANTS.EP_F_AUDIT,
  INGRESS_ENFORCED: C_CONSTANTS.EP_F_INGRESS_ENFORCED,
  EGRESS_ENFORCED: C_CONSTANTS.EP_F_EGRESS_ENFORCED,
} as const;

/** Config flags (struct config_entry.flags). */
export const ConfigFlags = { AUDIT: C_CONSTANTS.CFG_F_AUDIT, NO_FLOW_EVENTS: C_CONSTANTS.CFG_F_NO_FLOW_EVENTS } as const;

/** Conntrack flags (struct ct_entry.flags). */
export const CtFlags = {
  PROXY_REDIRECT: C_CONSTANTS.CT_F_PROXY_REDIRECT,
  CLOSING: C_CONSTANTS.CT_F_CLOSING,
  SEEN_REPLY: C_CONSTANTS.CT_F_SEEN_REPLY,
  FROM_PROXY: C_CONSTANTS.CT_F_FROM_PROXY,
  AUDITED: C_CONSTANTS.CT_F_AUDITED,
} as const;

/** IP protocol numbers used in keys. */
export const Proto = { ANY: 0, ICMP: 1, TCP: 6, UDP: 17, SCTP: 132, ICMPV6: 58 } as const;
