// SPDX-License-Identifier: Apache-2.0
/**
 * @module proxy/core/identities
 *
 * The identities of a redirected connection's two ends, read from the agent's pinned ipcache
 * (`--bpf-root`), as the datapath read them: a /32 lookup on the LPM map returns the longest
 * matching prefix. The map is opened lazily and reopened after a failure, so the proxy starts
 * before the agent has pinned anything and keeps working across agent restarts (the pins stay).
 * An address the map does not know is `world` (2), as in the datapath. When the pin is replaced
 * (`membrane cleanup` and a new agent), the map is reopened: the pin's inode is looked at, at most
 * every 2 s.
 */
import { statSync } from 'node:fs';
import { IpcacheMap } from '../../src/datapath/ipcache-map.ts';
import { MAP_NAMES } from '../../src/datapath/layout.ts';
import { TypedMap } from '../../src/datapath/typed-map.ts';

export const IDENTITY_WORLD = 2;

export class IpcacheIdentities {
  readonly #bpfRoot: string;
  #map: IpcacheMap | null = null;
  #retryAt = 0;
  #ino = 0;
  #checkedAt = 0;

  /** @param bpfRoot where the agent pins its maps */
  constructor(bpfRoot: string) {
    this.#bpfRoot = bpfRoot;
  }

  /**
   * The identity of an IPv4 address (world when unknown or when the map cannot be read).
   * @param ip dotted IPv4 text
   */
  identityOf(ip: string): number {
    const map = this.#open();
    if (!map) return IDENTITY_WORLD;
    try {
      return map.get({ addr: ip, prefixLen: 32 })?.identity ?? IDENTITY_WORLD;
    } catch {
      this.close(); // e.g. the pins were removed and made again: reopen next time
      return IDENTITY_WORLD;
    }
  }

  /** The pinned ipcache (for the DNS proxy's writes), or null when it cannot be opened now. */
  map(): IpcacheMap | null {
    return this.#open();
  }

  #pinIno(): number {
    try {
      return statSync(TypedMap.pinPath(this.#bpfRoot, MAP_NAMES.ipcache)).ino;
    } catch {
      return 0;
    }
  }

  #open(): IpcacheMap | null {
    const now = Date.now();
    if (this.#map && now - this.#checkedAt > 2000) {
      this.#checkedAt = now;
      if (this.#pinIno() !== this.#ino) this.close();
    }
    if (this.#map) return this.#map;
    if (now < this.#retryAt) return null;
    try {
      this.#ino = this.#pinIno();
      this.#map = IpcacheMap.open(this.#bpfRoot);
      this.#checkedAt = now;
    } catch {
      this.#retryAt = now + 1000;
    }
    return this.#map;
  }

  close(): void {
    try {
      this.#map?.close();
    } catch {
      /* already gone */
    }
    this.#map = null;
  }
}
