// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/e2e/helpers
 *
 * The privileged end-to-end harness (see README.md beside this file). Import from here:
 *
 * ```ts
 * import { requirePrivileges, createNode, startServer, tcpRequest } from './helpers/index.ts';
 * ```
 */
export { isCi, privilegedSkip, privilegeProblem, requirePrivileges, which } from './privileges.ts';
export { inNs, ipJson, netnsExists, nsArgv, runCmd, spawnInNs, type CmdResult, type NsCommandOptions, type NsProcess } from './ns.ts';
export {
  createNode,
  MEMBRANE_BIN,
  NodeTopology,
  REPO_ROOT,
  trackPid,
  uniqueNodeName,
  type EndpointsOptions,
  type NodeOptions,
  type PlannedEndpoint,
  type TestEndpoint,
} from './topology.ts';
export {
  CLIENT_SCRIPT,
  httpRequest,
  ping,
  SERVER_SCRIPT,
  startServer,
  tcpRequest,
  udpRequest,
  type ClientOptions,
  type ClientResult,
  type HttpResult,
  type Outcome,
  type PingResult,
  type TcpResult,
  type TrafficServer,
  type UdpResult,
} from './traffic.ts';
export {
  addLoopbackAddress,
  dig,
  dnsperfAvailable,
  parseDig,
  parseDnsperf,
  runDnsperf,
  startDnsmasq,
  startNsd,
  startUnbound,
  waitForDns,
  zoneFile,
  type DigOptions,
  type DigResult,
  type DnsAnswer,
  type DnsmasqOptions,
  type DnsmasqRecord,
  type DnsperfOptions,
  type DnsperfResult,
  type DnsServer,
  type NsdOptions,
  type UnboundOptions,
  type UnboundSetup,
  type Zone,
  type ZoneRecord,
} from './dns.ts';
export { cleanupAll, deleteNamespace, killPids, pidsInNamespace, trackedNamespaces } from './registry.ts';
