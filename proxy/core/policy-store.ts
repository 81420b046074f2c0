// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/policy-store
 *
 * The proxy's last policy on disk (`<state-dir>/proxy-policy.json`): written (atomically, by
 * rename) on every snapshot the agent pushes, read at start, so the proxy enforces the last
 * policy it knew while the agent is away and across its own restarts.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { L7PolicySnapshot } from '../../src/l7/policy.ts';

export interface StoredPolicy {
  snapshot: L7PolicySnapshot;
  /** The agent socket flows are reported to. */
  agentSocket?: string;
}

/**
 * Checks the shape of a snapshot received from the agent (the agent built it; this only guards
 * against a wrong or truncated document).
 * @returns the reason it is unusable, or null
 */
export function snapshotProblem(s: unknown): string | null {
  if (!s || typeof s !== 'object') return 'not an object';
  const o = s as Record<string, unknown>;
  if (typeof o.revision !== 'number') return 'revision: must be a number';
  if (typeof o.globalAudit !== 'boolean') return 'globalAudit: must be a boolean';
  if (!Array.isArray(o.endpoints)) return 'endpoints: must be a list';
  for (const [i, e] of o.endpoints.entries()) {
    const ep = e as Record<string, unknown>;
    if (!ep || typeof ep.ref !== 'string' || !Array.isArray(ep.ips) || !Array.isArray(ep.ingress) || !Array.isArray(ep.egress)) return `endpoints[${i}]: not an endpoint policy`;
  }
  if (o.fqdn !== undefined) {
    const f = o.fqdn as Record<string, unknown> | null;
    if (!f || !Array.isArray(f.selectors) || !Array.isArray(f.cidrs) || !Array.isArray(f.identities)) return 'fqdn: not an FQDN identity table';
  }
  return null;
}

export class PolicyStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'proxy-policy.json');
  }

  /** The stored policy, or null when there is none or it is unreadable. */
  read(): StoredPolicy | null {
    try {
      const doc = JSON.parse(readFileSync(this.file, 'utf8')) as StoredPolicy;
      return snapshotProblem(doc.snapshot) ? null : doc;
    } catch {
      return null;
    }
  }

  write(p: StoredPolicy): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(p));
    renameSync(tmp, this.file);
  }
}
