// SPDX-License-Identifier: Apache-2.0
/**
 * @module l7/kafka
 *
 * Kafka L7 rules with the Cilium ≤1.18 semantics (reference/cilium-semantics.md §4, §1.10;
 * DESIGN §2). Sources mirrored: `cilium/proxy: pkg/policy/api/kafka/kafka.go` (names, roles,
 * validation) and `proxylib/kafka/kafkalib/{policy,request}.go` (matching).
 *
 * Cilium's API-key vocabulary stops at 33 (`alterconfigs`); rules may only name those keys.
 * Requests can carry any key; names beyond 33 are for display only.
 *
 * Pure: no I/O, no imports from other project folders. No regex runs on request data here.
 */

/**
 * Cilium's API-key names (case-insensitive in rules) → numbers, 0..33 (reference §4). The only
 * names a rule's `apiKey` may use.
 */
export const KAFKA_API_KEYS: Readonly<Record<string, number>> = Object.freeze({
  produce: 0,
  fetch: 1,
  offsets: 2,
  metadata: 3,
  leaderandisr: 4,
  stopreplica: 5,
  updatemetadata: 6,
  controlledshutdown: 7,
  offsetcommit: 8,
  offsetfetch: 9,
  findcoordinator: 10,
  joingroup: 11,
  heartbeat: 12,
  leavegroup: 13,
  syncgroup: 14,
  describegroups: 15,
  listgroups: 16,
  saslhandshake: 17,
  apiversions: 18,
  createtopics: 19,
  deletetopics: 20,
  deleterecords: 21,
  initproducerid: 22,
  offsetforleaderepoch: 23,
  addpartitionstotxn: 24,
  addoffsetstotxn: 25,
  endtxn: 26,
  writetxnmarkers: 27,
  txnoffsetcommit: 28,
  describeacls: 29,
  createacls: 30,
  deleteacls: 31,
  describeconfigs: 32,
  alterconfigs: 33,
});

/**
 * The Kafka protocol's own API names, indexed by key (Apache Kafka `ApiKeys`; 0..42 as in
 * kafkajs `apiKeys.js`, which says `GroupCoordinator` for 10). For display and for reading
 * request descriptions; rules cannot use names beyond 33 (see {@link KAFKA_API_KEYS}).
 */
export const KAFKA_PROTOCOL_API_NAMES: readonly string[] = Object.freeze([
  'Produce', // 0
  'Fetch',
  'ListOffsets',
  'Metadata',
  'LeaderAndIsr',
  'StopReplica', // 5
  'UpdateMetadata',
  'ControlledShutdown',
  'OffsetCommit',
  'OffsetFetch',
  'FindCoordinator', // 10
  'JoinGroup',
  'Heartbeat',
  'LeaveGroup',
  'SyncGroup',
  'DescribeGroups', // 15
  'ListGroups',
  'SaslHandshake',
  'ApiVersions',
  'CreateTopics',
  'DeleteTopics', // 20
  'DeleteRecords',
  'InitProducerId',
  'OffsetForLeaderEpoch',
  'AddPartitionsToTxn',
  'AddOffsetsToTxn', // 25
  'EndTxn',
  'WriteTxnMarkers',
  'TxnOffsetCommit',
  'DescribeAcls',
  'CreateAcls', // 30
  'DeleteAcls',
  'DescribeConfigs',
  'AlterConfigs',
  'AlterReplicaLogDirs',
  'DescribeLogDirs', // 35
  'SaslAuthenticate',
  'CreatePartitions',
  'CreateDelegationToken',
  'RenewDelegationToken',
  'ExpireDelegationToken', // 40
  'DescribeDelegationToken',
  'DeleteGroups',
  'ElectLeaders',
  'IncrementalAlterConfigs',
  'AlterPartitionReassignments', // 45
  'ListPartitionReassignments',
  'OffsetDelete',
  'DescribeClientQuotas',
  'AlterClientQuotas',
  'DescribeUserScramCredentials', // 50
  'AlterUserScramCredentials',
  'Vote',
  'BeginQuorumEpoch',
  'EndQuorumEpoch',
  'DescribeQuorum', // 55
  'AlterPartition',
  'UpdateFeatures',
  'Envelope',
  'FetchSnapshot',
  'DescribeCluster', // 60
  'DescribeProducers',
  'BrokerRegistration',
  'BrokerHeartbeat',
  'UnregisterBroker',
  'DescribeTransactions', // 65
  'ListTransactions',
  'AllocateProducerIds',
  'ConsumerGroupHeartbeat',
  'ConsumerGroupDescribe',
  'ControllerRegistration', // 70
  'GetTelemetrySubscriptions',
  'PushTelemetry',
  'AssignReplicasToDirs',
  'ListClientMetricsResources',
  'DescribeTopicPartitions', // 75
]);

const CILIUM_NAME_BY_KEY: readonly string[] = Object.keys(KAFKA_API_KEYS).sort(
  (a, b) => KAFKA_API_KEYS[a]! - KAFKA_API_KEYS[b]!,
);

const PROTOCOL_KEY_BY_LOWER_NAME: ReadonlyMap<string, number> = new Map(
  KAFKA_PROTOCOL_API_NAMES.map((n, i) => [n.toLowerCase(), i] as const),
);

/** Largest value of Kafka's int16 api_key / api_version fields. */
const INT16_MAX = 32767;

/**
 * Reads an API key given as a name (case-insensitive) or a decimal number. Accepts Cilium's
 * names (`offsets`), the protocol's names (`ListOffsets`, `AlterReplicaLogDirs`, …) and numbers
 * 0..32767. Use {@link validateKafkaRule} for a rule's `apiKey`, which accepts Cilium's names only.
 *
 * @param nameOrNumber e.g. `produce`, `FETCH`, `listoffsets`, `18`
 * @returns the numeric key, or `null` when unknown
 * @example
 * kafkaApiKeyFromName('Produce'); // 0
 * kafkaApiKeyFromName('37');      // 37
 */
export function kafkaApiKeyFromName(nameOrNumber: string): number | null {
  const s = nameOrNumber.trim();
  if (/^[0-9]+$/.test(s)) {
    const n = Number(s);
    return n <= INT16_MAX ? n : null;
  }
  const lower = s.toLowerCase();
  const cilium = KAFKA_API_KEYS[lower];
  if (cilium !== undefined) return cilium;
  return PROTOCOL_KEY_BY_LOWER_NAME.get(lower) ?? null;
}

/**
 * Display name of an API key: Cilium's name for 0..33 (as in its access logs), the protocol's
 * name lower-cased beyond that, else the decimal number.
 *
 * @param n the numeric key
 * @returns e.g. `produce`, `offsets`, `alterreplicalogdirs`, `999`
 */
export function kafkaApiKeyName(n: number): string {
  const cilium = CILIUM_NAME_BY_KEY[n];
  if (cilium !== undefined) return cilium;
  const proto = KAFKA_PROTOCOL_API_NAMES[n];
  return proto !== undefined ? proto.toLowerCase() : String(n);
}

/** Keys a role expands to (reference §4, `GetAPIKeys`). */
export const KAFKA_ROLE_API_KEYS: Readonly<Record<'produce' | 'consume', readonly number[]>> = Object.freeze({
  // produce, metadata, apiversions
  produce: Object.freeze([0, 3, 18]),
  // fetch, offsets, metadata, offsetcommit, offsetfetch, findcoordinator, joingroup, heartbeat,
  // leavegroup, syncgroup, apiversions
  consume: Object.freeze([1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18]),
});

/**
 * "Topic API keys": request kinds that carry topics, for which a rule's `topic` applies
 * (reference §4, kafkalib `isTopicAPIKey`).
 */
export const KAFKA_TOPIC_API_KEYS: ReadonlySet<number> = new Set([
  0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 19, 20, 21, 23, 24, 27, 28, 34, 35, 37,
]);

/**
 * Kinds whose topics Cilium actually parsed: Produce, Fetch, ListOffsets, Metadata, OffsetCommit,
 * OffsetFetch (reference §4, kafkalib `setTopics`). Every other kind has an empty topic set.
 */
export const KAFKA_TOPICS_PARSED_API_KEYS: ReadonlySet<number> = new Set([0, 1, 2, 3, 8, 9]);

/** A Kafka rule as written in the CRD (`PortRuleKafka`, reference §1.10): all strings. */
export interface KafkaRuleSpec {
  role?: string;
  apiKey?: string;
  apiVersion?: string;
  clientID?: string;
  topic?: string;
}

/** The parts of a Kafka request that rules look at. */
export interface KafkaRequestInfo {
  /** Request API key (any int16, not just 0..33). */
  apiKey: number;
  /** Request API version; `null` = unknown (then a rule with `apiVersion` does not match). */
  apiVersion: number | null;
  /** Client id from the request header; `null` = none (treated like Cilium's `""`). */
  clientId: string | null;
  /** Topics named in the request, as parsed. Ignored for kinds outside {@link KAFKA_TOPICS_PARSED_API_KEYS}. */
  topics: string[];
}

/** Result of {@link KafkaRuleSet.matches}. */
export interface KafkaMatchResult {
  /** True when the request is allowed. */
  allowed: boolean;
  /**
   * The rules that allowed it: one rule without a topic constraint, or the topic rules that
   * together covered every topic. Empty when denied or when the rule list is empty.
   */
  ruleIndexes: number[];
  /** Topics no matching rule allowed (empty when allowed). */
  remainingTopics: string[];
}

/** Error thrown when a Kafka rule that was not validated is invalid. */
export class L7KafkaRuleError extends Error {
  readonly code = 'MBR_ERR_L7_KAFKA_RULE';

  /**
   * @param message what is wrong, naming the rule index and field
   */
  constructor(message: string) {
    super(message);
    this.name = 'L7KafkaRuleError';
  }
}

/** Maximum topic length in a rule (reference §1.10; Kafka 0.10+ allows 249, Cilium keeps 255). */
export const KAFKA_MAX_TOPIC_LEN = 255;

/** Topic characters `[a-zA-Z0-9._-]`, checked without a regex. */
function isTopicChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x2d
  );
}

/** Go `strconv.ParseInt(s, 10, 16)` restricted to 0..32767, as `Sanitize` does; `null` if invalid. */
function parseApiVersion(s: string): number | null {
  if (!/^[+-]?[0-9]+$/.test(s)) return null;
  const n = Number(s);
  return n >= 0 && n <= INT16_MAX ? Math.abs(n) : null; // Math.abs turns -0 into 0
}

/**
 * Validates a Kafka rule as Cilium's `PortRule.Sanitize` does (reference §1.10, §4):
 *   1. `role` and `apiKey` are mutually exclusive;
 *   2. `apiKey` is one of Cilium's names 0..33, case-insensitive (numbers and newer names are rejected);
 *   3. `role` is `produce` or `consume`, case-insensitive;
 *   4. `apiVersion` is a decimal integer 0..32767 (Go `ParseInt` also takes a leading sign);
 *   5. `topic` has at most 255 characters, all in `[a-zA-Z0-9._-]`.
 * Empty strings count as unset, as in Cilium.
 *
 * @param rule the rule from the policy
 * @returns an error message, or `null` when valid
 * @example
 * validateKafkaRule({ role: 'produce', topic: 'deathstar-plans' }); // null
 * validateKafkaRule({ apiKey: 'alterreplicalogdirs' });             // 'invalid Kafka apiKey "alterreplicalogdirs"…'
 */
export function validateKafkaRule(rule: KafkaRuleSpec): string | null {
  // 1.
  if (rule.role && rule.apiKey) {
    return `cannot set both role ${JSON.stringify(rule.role)} and apiKey ${JSON.stringify(rule.apiKey)}`;
  }
  // 2.
  if (rule.apiKey && KAFKA_API_KEYS[rule.apiKey.toLowerCase()] === undefined) {
    return `invalid Kafka apiKey ${JSON.stringify(rule.apiKey)}: must be one of ${CILIUM_NAME_BY_KEY.join(', ')}`;
  }
  // 3.
  if (rule.role) {
    const role = rule.role.toLowerCase();
    if (role !== 'produce' && role !== 'consume') {
      return `invalid Kafka role ${JSON.stringify(rule.role)}: must be produce or consume`;
    }
  }
  // 4.
  if (rule.apiVersion && parseApiVersion(rule.apiVersion) === null) {
    return `invalid Kafka apiVersion ${JSON.stringify(rule.apiVersion)}: must be a decimal integer 0..${INT16_MAX}`;
  }
  // 5.
  if (rule.topic) {
    if (rule.topic.length > KAFKA_MAX_TOPIC_LEN) {
      return `Kafka topic exceeds maximum length of ${KAFKA_MAX_TOPIC_LEN}`;
    }
    for (let i = 0; i < rule.topic.length; i++) {
      if (!isTopicChar(rule.topic.charCodeAt(i))) {
        return `invalid Kafka topic ${JSON.stringify(rule.topic)}: only letters, digits, ".", "_" and "-" are allowed`;
      }
    }
  }
  return null;
}

/**
 * The API keys a rule allows (reference §4): the role's set, the single `apiKey`, or `null`
 * for "all keys" when neither is set.
 *
 * @param rule a valid rule
 * @returns the keys, or `null` for all keys
 */
export function kafkaRuleApiKeys(rule: KafkaRuleSpec): readonly number[] | null {
  if (rule.role) {
    const role = rule.role.toLowerCase();
    if (role === 'produce' || role === 'consume') return KAFKA_ROLE_API_KEYS[role];
  }
  if (rule.apiKey) {
    const k = KAFKA_API_KEYS[rule.apiKey.toLowerCase()];
    if (k !== undefined) return [k];
  }
  return null;
}

/** A compiled rule (kafkalib `Rule`). */
interface CompiledKafkaRule {
  /** `null` = all keys. */
  apiKeys: ReadonlySet<number> | null;
  /** `null` = any version. */
  apiVersion: number | null;
  /** `""` = any client. */
  clientId: string;
  /** `""` = no topic constraint. */
  topic: string;
}

/**
 * The Kafka rules of one port (for one peer), compiled once.
 *
 * Decision rules (reference §4; kafkalib `Rule.Matches`, evaluated in order, first `true` wins):
 *   1. An empty rule list allows every request.
 *   2. The request's topic set is its topics if its kind is one Cilium parsed (Produce 0, Fetch 1,
 *      ListOffsets 2, Metadata 3, OffsetCommit 8, OffsetFetch 9); for every other kind it is empty,
 *      whatever the parser found (§4 edge case: Cilium did not parse them).
 *   3. A rule applies iff the API key is in its keys (or it has none), its `apiVersion` equals the
 *      request's (or is unset; an unknown request version never equals a set one), and its
 *      `clientID` equals the request's (or is unset; a missing client id is `""`).
 *   4. An applicable rule with a topic, on a topic API key (`KAFKA_TOPIC_API_KEYS`), removes its
 *      topic from the topic set if present; the request is allowed when that empties the set.
 *      So a multi-topic request needs every topic allowed, possibly by different rules; an empty
 *      topic set — a Metadata request for "all topics", or a topic kind Cilium did not parse
 *      (rule 2), e.g. CreateTopics, JoinGroup, FindCoordinator — never matches a topic rule.
 *   5. An applicable rule without a topic, or any applicable rule on a kind without topics
 *      (Heartbeat 12, LeaveGroup 13, SyncGroup 14, ApiVersions 18, …, whose requests ignore the
 *      topic constraint), allows the request outright.
 *   6. Otherwise the request is denied.
 *
 * @example
 * const kafka = new KafkaRuleSet([{ role: 'produce', topic: 'a' }, { role: 'produce', topic: 'b' }]);
 * kafka.matches({ apiKey: 0, apiVersion: 3, clientId: null, topics: ['a', 'b'] }).allowed; // true
 */
export class KafkaRuleSet {
  readonly rules: readonly KafkaRuleSpec[];
  private readonly compiled: CompiledKafkaRule[];

  /**
   * @param rules the `kafka` rules of a port, in policy order; an invalid rule throws
   *   {@link L7KafkaRuleError} (validate with {@link validateKafkaRule} first)
   */
  constructor(rules: readonly KafkaRuleSpec[]) {
    this.rules = rules;
    this.compiled = rules.map((r, i) => {
      const err = validateKafkaRule(r);
      if (err !== null) throw new L7KafkaRuleError(`kafka[${i}]: ${err}`);
      const keys = kafkaRuleApiKeys(r);
      return {
        apiKeys: keys === null ? null : new Set(keys),
        apiVersion: r.apiVersion ? parseApiVersion(r.apiVersion) : null,
        clientId: r.clientID ?? '',
        topic: r.topic ?? '',
      };
    });
  }

  /**
   * Decides a request.
   *
   * @param req the request
   * @returns whether it is allowed, the rules that allowed it and the topics left unallowed
   */
  matches(req: KafkaRequestInfo): KafkaMatchResult {
    // 1. no rules: allow all
    if (this.compiled.length === 0) return { allowed: true, ruleIndexes: [], remainingTopics: [] };

    // 2. the topic set
    const remaining = new Set(KAFKA_TOPICS_PARSED_API_KEYS.has(req.apiKey) ? req.topics : []);
    const topicKind = KAFKA_TOPIC_API_KEYS.has(req.apiKey);
    const clientId = req.clientId ?? '';
    const contributors: number[] = [];

    for (let i = 0; i < this.compiled.length; i++) {
      const r = this.compiled[i]!;
      // 3. key, version, client id
      if (r.apiKeys !== null && !r.apiKeys.has(req.apiKey)) continue;
      if (r.apiVersion !== null && r.apiVersion !== req.apiVersion) continue;
      if (r.clientId !== '' && r.clientId !== clientId) continue;
      if (r.topic !== '' && topicKind) {
        // 4. topic rule on a topic kind
        if (remaining.delete(r.topic)) {
          contributors.push(i);
          if (remaining.size === 0) return { allowed: true, ruleIndexes: contributors, remainingTopics: [] };
        }
        continue;
      }
      // 5. no topic constraint (or a kind without topics)
      return { allowed: true, ruleIndexes: [i], remainingTopics: [] };
    }
    // 6.
    return { allowed: false, ruleIndexes: [], remainingTopics: [...remaining] };
  }
}
