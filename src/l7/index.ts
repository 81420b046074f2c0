// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7
 *
 * The one L7 rule library (HTTP, gRPC-as-HTTP, DNS names, Kafka), shared by the offline
 * `policy trace` and the proxy (DESIGN §1, STYLE B2). Pure: no I/O, no imports from other
 * project folders. Every regex evaluated on request data runs on RE2 (npm `re2`).
 */

export {
  HttpRuleSet,
  L7HttpRuleError,
  grpcPath,
  parseGrpcPath,
  parseHeaderString,
  validateHttpRegex,
} from './http.ts';
export type { HeaderMatchSpec, HttpMatchResult, HttpRequestInfo, HttpRuleSpec } from './http.ts';

export {
  DnsRuleSet,
  MAX_FQDN_LENGTH,
  compileDnsPattern,
  fqdnSelectorKey,
  fqdnSelectorMatches,
  normalizeDnsName,
  validateFqdnSelector,
  validateMatchName,
  validateMatchPattern,
} from './dns.ts';
export type { DnsMatchResult, DnsPatternMatcher, DnsPatternOptions, DnsRuleSpec } from './dns.ts';

export {
  KAFKA_API_KEYS,
  KAFKA_MAX_TOPIC_LEN,
  KAFKA_PROTOCOL_API_NAMES,
  KAFKA_ROLE_API_KEYS,
  KAFKA_TOPICS_PARSED_API_KEYS,
  KAFKA_TOPIC_API_KEYS,
  KafkaRuleSet,
  L7KafkaRuleError,
  kafkaApiKeyFromName,
  kafkaApiKeyName,
  kafkaRuleApiKeys,
  validateKafkaRule,
} from './kafka.ts';
export type { KafkaMatchResult, KafkaRequestInfo, KafkaRuleSpec } from './kafka.ts';

export { FqdnResolver, fqdnSetKey } from './fqdn.ts';
export type { FqdnIdentityTable } from './fqdn.ts';

export { decideL7 } from './policy.ts';
export type { Direction, EndpointL7Policy, L7Decision, L7Parser, L7PolicySnapshot, L7PortPolicy, L7Request, L7Rule, OriginRule } from './policy.ts';
