// SPDX-License-Identifier: Apache-2.0
/**
 * @module api
 *
 * Public surface of `src/api`: load and validate policy files into the sanitized model of
 * `api/types.ts` (DESIGN §1: "src/api parse + validate").
 */
export { assertValid, loadPolicyPaths, parsePolicyText, POLICY_EXTENSIONS } from './load.ts';
export { DEFAULT_NAMESPACE, POLICY_API_VERSIONS, POLICY_KINDS, validateObject } from './validate.ts';
export type { ObjectResult, ObjectSource } from './validate.ts';
export { cidrContains, cidrText, parseCidr } from './cidr.ts';
export type { CidrPrefix } from './cidr.ts';
export { ICMPV4_TYPES, ICMPV6_TYPES, icmpTypeNumber } from './icmp.ts';
export { ENTITY_SELECTORS, LOCAL_CLUSTER } from './selector.ts';
export * from './types.ts';
