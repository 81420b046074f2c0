// SPDX-License-Identifier: Apache-2.0
/**
 * @module api/cidr-peer
 *
 * CIDR peers shared by CNP/CCNP (`toCIDR`, `toCIDRSet`, …) and NetworkPolicy `ipBlock`
 * (reference §1.3, §1.12, §2.10, §2.14).
 */
import { cidrContains, cidrText, parseCidr, type CidrPrefix } from './cidr.ts';
import { childPath, Ctx, readStringList } from './schema.ts';
import { selectorOf } from './selector.ts';
import type { LabelRequirement, PeerSelector } from './types.ts';

/** Parses a CIDR, warning when host bits were cleared. */
export function readPrefix(ctx: Ctx, s: string, path: string): CidrPrefix | undefined {
  const p = parseCidr(s);
  if (typeof p === 'string') {
    ctx.error(path, p);
    return undefined;
  }
  if (p.hadHostBits) ctx.warning(path, `${JSON.stringify(s)} has host bits set; using ${cidrText(p)}`);
  return p;
}

/**
 * A CIDR peer (reference §2.10): `cidr:<prefix> Exists` (or `reserved:world Exists` for
 * `0.0.0.0/0` and `::/0`) plus `cidr:<except> DoesNotExist` for each except.
 */
export function cidrPeer(prefix: CidrPrefix, excepts: CidrPrefix[]): PeerSelector {
  const reqs: LabelRequirement[] = [
    { key: prefix.len === 0 ? 'reserved:world' : `cidr:${cidrText(prefix)}`, operator: 'Exists', values: [] },
    ...excepts.map((e): LabelRequirement => ({ key: `cidr:${cidrText(e)}`, operator: 'DoesNotExist', values: [] })),
  ];
  return { type: 'labels', field: 'cidr', selector: selectorOf(reqs) };
}

/** Validates excepts against their prefix: same family and contained (reference §1.12). */
export function readExcepts(ctx: Ctx, v: unknown, path: string, prefix: CidrPrefix | undefined): CidrPrefix[] {
  const out: CidrPrefix[] = [];
  const list = readStringList(ctx, v, path);
  list?.forEach((s, i) => {
    const ep = childPath(path, i);
    const e = readPrefix(ctx, s, ep);
    if (!e || !prefix) return;
    if (e.family !== prefix.family) ctx.error(ep, `except ${JSON.stringify(s)} is not of the same address family as ${cidrText(prefix)}`);
    else if (!cidrContains(prefix, e)) ctx.error(ep, `except ${JSON.stringify(s)} is not contained in ${cidrText(prefix)}`);
    else out.push(e);
  });
  return out;
}
