// SPDX-License-Identifier: Apache-2.0
/**
 * @module test/unit/l7/kafka
 *
 * Kafka rule semantics (Cilium ≤1.18), each case citing reference/cilium-semantics.md.
 */

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  KAFKA_API_KEYS,
  KAFKA_PROTOCOL_API_NAMES,
  KAFKA_ROLE_API_KEYS,
  KafkaRuleSet,
  L7KafkaRuleError,
  kafkaApiKeyFromName,
  kafkaApiKeyName,
  kafkaRuleApiKeys,
  validateKafkaRule,
  type KafkaRequestInfo,
} from '../../../src/l7/index.ts';

/** Builds a request; version 5, no client id, no topics unless given. */
function kreq(apiKey: number, topics: string[] = [], extra: Partial<KafkaRequestInfo> = {}): KafkaRequestInfo {
  return { apiKey, apiVersion: 5, clientId: null, topics, ...extra };
}

const PRODUCE = 0;
const FETCH = 1;
const LIST_OFFSETS = 2;
const METADATA = 3;
const OFFSET_COMMIT = 8;
const FIND_COORDINATOR = 10;
const JOIN_GROUP = 11;
const HEARTBEAT = 12;
const API_VERSIONS = 18;
const CREATE_TOPICS = 19;
const CREATE_PARTITIONS = 37;

describe('l7/kafka API keys (§4, §1.10)', () => {
  it('§4: the Cilium table maps names 0..33', () => {
    assert.equal(Object.keys(KAFKA_API_KEYS).length, 34);
    assert.equal(KAFKA_API_KEYS.produce, 0);
    assert.equal(KAFKA_API_KEYS.offsets, 2);
    assert.equal(KAFKA_API_KEYS.findcoordinator, 10);
    assert.equal(KAFKA_API_KEYS.apiversions, 18);
    assert.equal(KAFKA_API_KEYS.alterconfigs, 33);
    assert.deepEqual(
      Object.values(KAFKA_API_KEYS).sort((a, b) => a - b),
      Array.from({ length: 34 }, (_, i) => i),
    );
  });

  it('§4: kafkaApiKeyFromName takes names case-insensitively, protocol names and numbers', () => {
    assert.equal(kafkaApiKeyFromName('produce'), 0);
    assert.equal(kafkaApiKeyFromName('PRODUCE'), 0);
    assert.equal(kafkaApiKeyFromName('Fetch'), 1);
    assert.equal(kafkaApiKeyFromName('ListOffsets'), 2);
    assert.equal(kafkaApiKeyFromName('offsets'), 2);
    assert.equal(kafkaApiKeyFromName('AlterReplicaLogDirs'), 34);
    assert.equal(kafkaApiKeyFromName('18'), 18);
    assert.equal(kafkaApiKeyFromName('37'), 37);
    assert.equal(kafkaApiKeyFromName('nope'), null);
    assert.equal(kafkaApiKeyFromName('-1'), null);
    assert.equal(kafkaApiKeyFromName('40000'), null);
  });

  it('§4: kafkaApiKeyName gives Cilium names for 0..33 and protocol names beyond', () => {
    assert.equal(kafkaApiKeyName(0), 'produce');
    assert.equal(kafkaApiKeyName(2), 'offsets');
    assert.equal(kafkaApiKeyName(33), 'alterconfigs');
    assert.equal(kafkaApiKeyName(34), 'alterreplicalogdirs');
    assert.equal(kafkaApiKeyName(68), 'consumergroupheartbeat');
    assert.equal(kafkaApiKeyName(9999), '9999');
    assert.ok(KAFKA_PROTOCOL_API_NAMES.length > 68);
  });
});

describe('l7/kafka validateKafkaRule (§1.10)', () => {
  it('§1.10: accepts the CRD forms', () => {
    for (const r of [
      {},
      { role: 'produce' },
      { role: 'CONSUME', topic: 'a.b_c-1' },
      { apiKey: 'Metadata', apiVersion: '0' },
      { apiKey: 'alterconfigs', apiVersion: '32767', clientID: 'anything goes' },
      { apiVersion: '+7' }, // Go ParseInt accepts a sign
      { role: '', apiKey: 'fetch' }, // empty = unset
    ]) {
      assert.equal(validateKafkaRule(r), null, JSON.stringify(r));
    }
  });

  it('§1.10: role and apiKey are mutually exclusive', () => {
    assert.match(validateKafkaRule({ role: 'produce', apiKey: 'produce' }) ?? '', /both/);
  });

  it('§1.10: only the 0..33 names are valid apiKeys (no numbers, no newer names)', () => {
    assert.ok(validateKafkaRule({ apiKey: 'alterreplicalogdirs' }) !== null);
    assert.ok(validateKafkaRule({ apiKey: 'listoffsets' }) !== null);
    assert.ok(validateKafkaRule({ apiKey: '0' }) !== null);
    assert.ok(validateKafkaRule({ apiKey: 'bogus' }) !== null);
  });

  it('§1.10: role must be produce or consume', () => {
    assert.ok(validateKafkaRule({ role: 'admin' }) !== null);
  });

  it('§1.10: apiVersion is a decimal 0..32767', () => {
    for (const v of ['-1', '32768', 'abc', '1.5', '0x10', ' 1']) assert.ok(validateKafkaRule({ apiVersion: v }) !== null, v);
  });

  it('§1.10: topic is ≤255 characters of [a-zA-Z0-9._-]', () => {
    assert.equal(validateKafkaRule({ topic: 't'.repeat(255) }), null);
    assert.ok(validateKafkaRule({ topic: 't'.repeat(256) }) !== null);
    for (const t of ['a b', 'a/b', 'a\\b', 'a*', 'é']) assert.ok(validateKafkaRule({ topic: t }) !== null, t);
  });

  it('§1.10: KafkaRuleSet refuses an invalid rule', () => {
    assert.throws(() => new KafkaRuleSet([{ role: 'admin' }]), L7KafkaRuleError);
  });
});

describe('l7/kafka roles (§4)', () => {
  it('§4: produce → {0,3,18}; consume → {1,2,3,8,9,10,11,12,13,14,18}; neither → all', () => {
    assert.deepEqual([...KAFKA_ROLE_API_KEYS.produce], [0, 3, 18]);
    assert.deepEqual([...KAFKA_ROLE_API_KEYS.consume], [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18]);
    assert.deepEqual(kafkaRuleApiKeys({ role: 'Produce' }), [0, 3, 18]);
    assert.deepEqual(kafkaRuleApiKeys({ apiKey: 'HEARTBEAT' }), [12]);
    assert.equal(kafkaRuleApiKeys({}), null);
  });

  it('§4: a produce role allows Produce but not Fetch', () => {
    const rules = new KafkaRuleSet([{ role: 'produce' }]);
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['t'])), { allowed: true, ruleIndexes: [0], remainingTopics: [] });
    assert.equal(rules.matches(kreq(METADATA)).allowed, true);
    assert.equal(rules.matches(kreq(API_VERSIONS)).allowed, true);
    assert.equal(rules.matches(kreq(FETCH, ['t'])).allowed, false);
    assert.equal(rules.matches(kreq(CREATE_TOPICS)).allowed, false);
  });

  it('§4: a consume role allows Fetch and group calls but not Produce', () => {
    const rules = new KafkaRuleSet([{ role: 'consume' }]);
    for (const k of [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18]) assert.equal(rules.matches(kreq(k)).allowed, true, String(k));
    assert.equal(rules.matches(kreq(PRODUCE, ['t'])).allowed, false);
  });

  it('§4: a single apiKey allows only that key', () => {
    const rules = new KafkaRuleSet([{ apiKey: 'apiversions' }]);
    assert.equal(rules.matches(kreq(API_VERSIONS)).allowed, true);
    assert.equal(rules.matches(kreq(METADATA)).allowed, false);
  });

  it('§4: a rule with neither role nor apiKey allows every key, including keys beyond 33', () => {
    const rules = new KafkaRuleSet([{}]);
    for (const k of [0, 7, 33, 37, 68]) assert.equal(rules.matches(kreq(k)).allowed, true, String(k));
  });

  it('§4: an empty rule list allows every request', () => {
    assert.deepEqual(new KafkaRuleSet([]).matches(kreq(CREATE_TOPICS, ['x'])), {
      allowed: true,
      ruleIndexes: [],
      remainingTopics: [],
    });
  });
});

describe('l7/kafka apiVersion and clientID (§4)', () => {
  it('§4: apiVersion must equal; an unknown request version never matches a rule with apiVersion', () => {
    const rules = new KafkaRuleSet([{ apiKey: 'produce', apiVersion: '3' }]);
    assert.equal(rules.matches(kreq(PRODUCE, [], { apiVersion: 3 })).allowed, true);
    assert.equal(rules.matches(kreq(PRODUCE, [], { apiVersion: 4 })).allowed, false);
    assert.equal(rules.matches(kreq(PRODUCE, [], { apiVersion: null })).allowed, false);
    // without apiVersion in the rule, an unknown version is fine
    assert.equal(new KafkaRuleSet([{ apiKey: 'produce' }]).matches(kreq(PRODUCE, [], { apiVersion: null })).allowed, true);
  });

  it('§4: clientID must equal exactly (case-sensitive); a missing client id only matches rules without clientID', () => {
    const rules = new KafkaRuleSet([{ clientID: 'billing' }]);
    assert.equal(rules.matches(kreq(FETCH, [], { clientId: 'billing' })).allowed, true);
    assert.equal(rules.matches(kreq(FETCH, [], { clientId: 'Billing' })).allowed, false);
    assert.equal(rules.matches(kreq(FETCH, [], { clientId: null })).allowed, false);
    assert.equal(rules.matches(kreq(FETCH, [], { clientId: '' })).allowed, false);
    assert.equal(new KafkaRuleSet([{ clientID: '' }]).matches(kreq(FETCH, [], { clientId: null })).allowed, true);
  });
});

describe('l7/kafka topics (§4)', () => {
  it('§4: a topic rule allows its topic only', () => {
    const rules = new KafkaRuleSet([{ role: 'produce', topic: 'deathstar-plans' }]);
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['deathstar-plans'])), { allowed: true, ruleIndexes: [0], remainingTopics: [] });
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['other'])), { allowed: false, ruleIndexes: [], remainingTopics: ['other'] });
    assert.equal(rules.matches(kreq(PRODUCE, ['Deathstar-plans'])).allowed, false); // exact, case-sensitive
  });

  it('§4: a multi-topic request needs every topic, possibly from different rules', () => {
    const rules = new KafkaRuleSet([
      { role: 'produce', topic: 'a' },
      { role: 'consume', topic: 'z' },
      { role: 'produce', topic: 'b' },
    ]);
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['a', 'b'])), { allowed: true, ruleIndexes: [0, 2], remainingTopics: [] });
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['b', 'a', 'a'])), { allowed: true, ruleIndexes: [0, 2], remainingTopics: [] });
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['a', 'c'])), { allowed: false, ruleIndexes: [], remainingTopics: ['c'] });
    // z is only allowed for consume; a Produce to a and z is denied
    assert.equal(rules.matches(kreq(PRODUCE, ['a', 'z'])).allowed, false);
    assert.equal(rules.matches(kreq(FETCH, ['z'])).allowed, true);
  });

  it('§4: a matching rule without a topic allows the request outright, whatever its topics', () => {
    const rules = new KafkaRuleSet([{ role: 'produce', topic: 'a' }, { apiKey: 'produce' }]);
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['a', 'x', 'y'])), { allowed: true, ruleIndexes: [1], remainingTopics: [] });
  });

  it('§4: a topic rule whose key/version/client does not apply removes nothing', () => {
    const rules = new KafkaRuleSet([
      { role: 'produce', topic: 'a', clientID: 'other' },
      { role: 'produce', topic: 'b' },
    ]);
    assert.deepEqual(rules.matches(kreq(PRODUCE, ['a', 'b'])), { allowed: false, ruleIndexes: [], remainingTopics: ['a'] });
  });

  it('§4: a Metadata request with no topics ("all topics") never matches a topic-constrained rule', () => {
    const rules = new KafkaRuleSet([{ role: 'produce', topic: 'a' }]);
    assert.equal(rules.matches(kreq(METADATA, [])).allowed, false);
    assert.equal(rules.matches(kreq(METADATA, ['a'])).allowed, true);
    assert.equal(new KafkaRuleSet([{ role: 'produce' }]).matches(kreq(METADATA, [])).allowed, true);
  });

  it('§4: Heartbeat (and other kinds without topics) ignore the topic constraint', () => {
    const rules = new KafkaRuleSet([{ role: 'consume', topic: 'a' }]);
    for (const k of [12, 13, 14, 18]) assert.equal(rules.matches(kreq(k)).allowed, true, String(k));
    assert.deepEqual(rules.matches(kreq(HEARTBEAT, ['ignored'])), { allowed: true, ruleIndexes: [0], remainingTopics: [] });
  });

  it('§4: topic kinds Cilium did not parse (CreateTopics, JoinGroup, FindCoordinator, CreatePartitions) never match a topic rule', () => {
    const rules = new KafkaRuleSet([{ topic: 'a' }]);
    for (const k of [CREATE_TOPICS, JOIN_GROUP, FIND_COORDINATOR, CREATE_PARTITIONS]) {
      // even when our parser did find the topic, Cilium's topic set for these kinds is empty
      assert.equal(rules.matches(kreq(k, ['a'])).allowed, false, String(k));
    }
    // a rule without topic still allows them
    assert.equal(new KafkaRuleSet([{}]).matches(kreq(CREATE_TOPICS, ['a'])).allowed, true);
  });

  it('§4: topics are honoured for every parsed kind (Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch)', () => {
    const rules = new KafkaRuleSet([{ topic: 'a' }]);
    for (const k of [PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, 9]) {
      assert.equal(rules.matches(kreq(k, ['a'])).allowed, true, String(k));
      assert.equal(rules.matches(kreq(k, ['b'])).allowed, false, String(k));
    }
  });

  it('§4: a parsed topic kind with no topics does not match a topic rule (Produce with empty topic list)', () => {
    assert.equal(new KafkaRuleSet([{ role: 'produce', topic: 'a' }]).matches(kreq(PRODUCE, [])).allowed, false);
  });

  it('§4: a non-topic kind outside the topic list (key 7) ignores the topic, like Heartbeat', () => {
    assert.equal(new KafkaRuleSet([{ topic: 'a' }]).matches(kreq(7)).allowed, true);
  });

  it('§4: the result does not depend on rule order', () => {
    const a = { role: 'produce', topic: 'a' };
    const b = { role: 'produce', topic: 'b' };
    const none = { apiKey: 'fetch' };
    for (const order of [[a, b, none], [b, a, none], [none, b, a], [b, none, a]]) {
      const rules = new KafkaRuleSet(order);
      assert.equal(rules.matches(kreq(PRODUCE, ['a', 'b'])).allowed, true);
      assert.equal(rules.matches(kreq(PRODUCE, ['a', 'c'])).allowed, false);
    }
  });

  it('§4: evaluation does not mutate the request or leak state between calls', () => {
    const rules = new KafkaRuleSet([{ topic: 'a' }, { topic: 'b' }]);
    const r = kreq(PRODUCE, ['a', 'b']);
    assert.equal(rules.matches(r).allowed, true);
    assert.deepEqual(r.topics, ['a', 'b']);
    assert.equal(rules.matches(r).allowed, true);
  });
});
