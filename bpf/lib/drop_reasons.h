/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Drop reasons: the one error table of the datapath.
 *
 * Every helper in bpf/lib returns 0 (or a positive value) on success and a
 * negative DROP_* code on failure; only the entry programs turn an error into
 * a drop (one drop exit each, see bpf_lxc.c / bpf_host.c).
 *
 * The numbers are Cilium's (bpf/lib/common.h; Hubble flow.proto DropReason),
 * negated. This header is shared with src/datapath/drop-reasons.ts, which must
 * also be updated when a code is added or changed;
 * test/unit/datapath/drop-reasons.test.ts parses this file and fails when the
 * two disagree. Keep one `#define DROP_<NAME> -<N>` per line, followed by a
 * comment holding the Hubble name.
 */
#ifndef __MBR_DROP_REASONS_H
#define __MBR_DROP_REASONS_H

#define DROP_INVALID_SIP	-132	/* INVALID_SOURCE_IP */
#define DROP_POLICY		-133	/* POLICY_DENIED: no entry allows it (default deny) */
#define DROP_INVALID		-134	/* INVALID_PACKET_DROPPED: malformed L3 header */
#define DROP_CT_INVALID_HDR	-135	/* CT_TRUNCATED_OR_INVALID_HEADER: truncated L4 header */
#define DROP_CT_UNKNOWN_PROTO	-137	/* CT_UNKNOWN_L4_PROTOCOL */
#define DROP_UNKNOWN_L3		-139	/* UNSUPPORTED_L3_PROTOCOL: not IPv4 (nor ARP) */
#define DROP_UNKNOWN_L4		-142	/* UNKNOWN_L4_PROTOCOL */
#define DROP_CT_CREATE_FAILED	-155	/* CT_MAP_INSERTION_FAILED */
#define DROP_FRAG_NOSUPPORT	-157	/* IP_FRAGMENTATION_NOT_SUPPORTED: non-first fragment */
#define DROP_PROXYMAP_CREATE_FAILED -161	/* FAILED_TO_INSERT_INTO_PROXYMAP: UDP redirect, mbr_origdst_v1 write failed */
#define DROP_NO_CONFIG		-165	/* NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION */
#define DROP_PROXY_LOOKUP_FAILED -178	/* SOCKET_LOOKUP_FAILED: no proxy listener (fail closed) */
#define DROP_PROXY_SET_FAILED	-179	/* SOCKET_ASSIGN_FAILED: bpf_sk_assign refused */
#define DROP_PROXY_UNKNOWN_PROTO -180	/* PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL */
#define DROP_POLICY_DENY	-181	/* POLICY_DENY: an explicit deny entry matched */

#define IS_ERR(x)	((x) < 0)

#endif /* __MBR_DROP_REASONS_H */
