// SPDX-License-Identifier: Apache-2.0
/**
 * @module datapath
 * Public API of the datapath: loading and attaching the BPF programs, typed access to the pinned maps, the
 * verdict event reader, and the layouts/drop reasons they share with bpf/. Byte layouts live only here.
 */
export * from './errors.ts';
export { load, attach, detach, query, ensureBpffs, removePins, destroyHooks, BPFFS_ROOT, TC_HANDLE, TC_PRIORITY } from './loader.ts';
export type { LoadOptions, LoadedObject, TcDirection } from './loader.ts';
export { DEFAULT_PIN_ROOT, TypedMap } from './typed-map.ts';
export { BpfMap, MapType, BPF_ANY, BPF_NOEXIST, BPF_EXIST, type MapSpec } from './bpf-map.ts';
export { IpcacheMap, type IpcacheKey, type IpcacheEntry } from './ipcache-map.ts';
export { EndpointsMap, endpointFlags, type EndpointInfo, type EndpointKey } from './endpoints-map.ts';
export { PolicyMap, type PolicyEntryDesc, type PolicyKeyDesc, type PolicyValueDesc } from './policy-map.ts';
export { CtMap, type CtKey, type CtEntry, type CtDecision } from './ct-map.ts';
export { ProxyOrigMap, type ProxyOrigKey, type ProxyOrigEntry, type OrigDestination } from './proxy-orig-map.ts';
export { PolicyRevision, type RevisionBumper } from './policy-revision.ts';
export { ConfigMap, type DatapathConfig } from './config-map.ts';
export { MetricsMap, type MetricsCounter } from './metrics-map.ts';
export { RingbufReader, type RingbufStartOptions } from './ringbuf.ts';
export { decodeVerdictEvent, type VerdictEvent, type SideVerdict, type Verdict, type ObservationPoint, type SideOutcome, type MatchType } from './verdict-event.ts';
export { testRun, TC_ACT_OK, TC_ACT_SHOT, type TestRunInput, type TestRunResult } from './test-run.ts';
export { DropReason, DROP_REASONS, dropReason, dropReasonName, type DropReasonInfo } from './drop-reasons.ts';
export { Identity, Mark, EndpointFlags, ConfigFlags, CtFlags, Proto, MAP_NAMES, PROGRAMS, proxyMark } from './layout.ts';
export { setTransparent, setMark, transparentListenFd, markedStreamFd, markedDgramFd, transparentReplyFd } from './sockets.ts';
