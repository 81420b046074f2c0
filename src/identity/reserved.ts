// SPDX-License-Identifier: Apache-2.0
/**
 * @module identity/reserved
 *
 * Reserved numeric identities (reference §2.9) and the identity number spaces.
 */
import { LabelSet } from '../labels/labels.ts';

export const ID_ANY = 0;
export const ID_HOST = 1;
export const ID_WORLD = 2;
export const ID_UNMANAGED = 3;
export const ID_HEALTH = 4;
export const ID_INIT = 5;
export const ID_REMOTE_NODE = 6;
export const ID_KUBE_APISERVER = 7;
export const ID_INGRESS = 8;
export const ID_WORLD_IPV4 = 9;
export const ID_WORLD_IPV6 = 10;

/** First and last cluster-scoped (pod) identity. */
export const GLOBAL_ID_MIN = 256;
export const GLOBAL_ID_MAX = 65535;
/** Node-local identities (CIDR, FQDN) start here (reference §2.9). */
export const LOCAL_ID_BASE = 0x01000000;

/** Reserved identities present on every node. Single-stack IPv4 world is identity 2. */
export const RESERVED_IDENTITIES: ReadonlyArray<{ id: number; name: string; labels: LabelSet }> = [
  { id: ID_HOST, name: 'host', labels: LabelSet.parse(['reserved:host']) },
  { id: ID_WORLD, name: 'world', labels: LabelSet.parse(['reserved:world']) },
  { id: ID_UNMANAGED, name: 'unmanaged', labels: LabelSet.parse(['reserved:unmanaged']) },
  { id: ID_HEALTH, name: 'health', labels: LabelSet.parse(['reserved:health']) },
  { id: ID_INIT, name: 'init', labels: LabelSet.parse(['reserved:init']) },
  { id: ID_REMOTE_NODE, name: 'remote-node', labels: LabelSet.parse(['reserved:remote-node']) },
  { id: ID_KUBE_APISERVER, name: 'kube-apiserver', labels: LabelSet.parse(['reserved:kube-apiserver', 'reserved:remote-node']) },
  { id: ID_INGRESS, name: 'ingress', labels: LabelSet.parse(['reserved:ingress']) },
  { id: ID_WORLD_IPV4, name: 'world-ipv4', labels: LabelSet.parse(['reserved:world-ipv4']) },
  { id: ID_WORLD_IPV6, name: 'world-ipv6', labels: LabelSet.parse(['reserved:world-ipv6']) },
];

/** Name of a reserved identity, or undefined. */
export function reservedName(id: number): string | undefined {
  return RESERVED_IDENTITIES.find((r) => r.id === id)?.name;
}

/** True for node-local (CIDR/FQDN) identities. */
export function isLocalIdentity(id: number): boolean {
  return id >= LOCAL_ID_BASE;
}
