// SPDX-License-Identifier: Apache-2.0
/**
 * @module identity/allocator
 *
 * Stable numeric identities for label sets. Pod label sets get cluster-scope numbers from 256,
 * CIDR and FQDN label sets node-local numbers from 0x01000000 (reference §2.9). The same label
 * set always gets the same number for the allocator's lifetime; `snapshot()`/`restore()` let the
 * agent keep numbers across restarts (its state directory), so pinned maps stay valid.
 */
import { LabelSet } from '../labels/labels.ts';
import { GLOBAL_ID_MAX, GLOBAL_ID_MIN, LOCAL_ID_BASE, RESERVED_IDENTITIES } from './reserved.ts';

export interface Identity {
  id: number;
  labels: LabelSet;
}

export class IdentityAllocationError extends Error {
  readonly code = 'MBR_ERR_IDENTITY_EXHAUSTED';
}

/** True when a label set is node-local (CIDR or FQDN identity). */
function isLocalLabelSet(labels: LabelSet): boolean {
  return labels.labels.some((l) => l.source === 'cidr' || l.source === 'fqdn');
}

export class IdentityAllocator {
  readonly #byLabels = new Map<string, Identity>();
  readonly #byId = new Map<number, Identity>();
  #nextGlobal = GLOBAL_ID_MIN;
  #nextLocal = LOCAL_ID_BASE + 1;

  constructor() {
    for (const r of RESERVED_IDENTITIES) this.#insert({ id: r.id, labels: r.labels });
  }

  #insert(identity: Identity): void {
    this.#byLabels.set(identity.labels.id, identity);
    this.#byId.set(identity.id, identity);
  }

  /**
   * Returns the identity for a label set, allocating one if needed.
   * @param labels identity labels
   * @returns the identity and whether it is new
   */
  allocate(labels: LabelSet): { identity: Identity; isNew: boolean } {
    const existing = this.#byLabels.get(labels.id);
    if (existing) return { identity: existing, isNew: false };
    let id: number;
    if (isLocalLabelSet(labels)) {
      while (this.#byId.has(this.#nextLocal)) this.#nextLocal++;
      id = this.#nextLocal++;
    } else {
      // numbers increase so a released number is not reused at once; past the end, wrap
      // around and reuse released ones
      let tries = 0;
      while (this.#byId.has(this.#nextGlobal) || this.#nextGlobal > GLOBAL_ID_MAX) {
        this.#nextGlobal = this.#nextGlobal >= GLOBAL_ID_MAX ? GLOBAL_ID_MIN : this.#nextGlobal + 1;
        if (++tries > GLOBAL_ID_MAX - GLOBAL_ID_MIN + 1) throw new IdentityAllocationError('cluster identity space exhausted');
      }
      id = this.#nextGlobal++;
    }
    const identity = { id, labels };
    this.#insert(identity);
    return { identity, isNew: true };
  }

  /** Forgets an identity (when nothing refers to it any more). Reserved identities stay. */
  release(id: number): void {
    const identity = this.#byId.get(id);
    if (!identity || id < GLOBAL_ID_MIN) return;
    this.#byId.delete(id);
    this.#byLabels.delete(identity.labels.id);
  }

  get(id: number): Identity | undefined {
    return this.#byId.get(id);
  }

  lookup(labels: LabelSet): Identity | undefined {
    return this.#byLabels.get(labels.id);
  }

  all(): IterableIterator<Identity> {
    return this.#byId.values();
  }

  /** Label set id → number, for persisting. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const i of this.#byId.values()) if (i.id >= GLOBAL_ID_MIN) out[i.labels.id] = i.id;
    return out;
  }

  /** Re-inserts numbers from a snapshot before any allocation. */
  restore(snapshot: Record<string, number>): void {
    for (const [labelsId, id] of Object.entries(snapshot)) {
      if (this.#byId.has(id)) continue;
      const labels = LabelSet.parse(labelsId === '' ? [] : labelsId.split(';'));
      if (this.#byLabels.has(labels.id)) continue;
      this.#insert({ id, labels });
    }
  }
}
