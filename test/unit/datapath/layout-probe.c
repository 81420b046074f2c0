/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layout probe for test/unit/datapath/layout.test.ts: one global of every struct mirrored in
 * src/datapath/layout.ts, so the compiled object's BTF describes them all (sizes and member offsets).
 * Compiled with the same flags as scripts/build-bpf.mjs; never loaded.
 */
#include "common.h"
#include "decision.h"

struct ipcache_key probe_ipcache_key;
struct ipcache_entry probe_ipcache_entry;
struct endpoint_info probe_endpoint_info;
struct policy_key probe_policy_key;
struct policy_entry probe_policy_entry;
struct ct_key probe_ct_key;
struct ct_entry probe_ct_entry;
struct polrev_entry probe_polrev_entry;
struct config_entry probe_config_entry;
struct metrics_key probe_metrics_key;
struct metrics_entry probe_metrics_entry;
struct evrate_state probe_evrate_state;
struct verdict_event probe_verdict_event;
struct proxy_orig_key probe_proxy_orig_key;
struct proxy_orig_entry probe_proxy_orig_entry;

char LICENSE[] SEC("license") = "Dual BSD/GPL";
