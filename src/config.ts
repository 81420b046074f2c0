// SPDX-License-Identifier: Apache-2.0
/**
 * @module config
 *
 * Agent and proxy settings (`--config FILE`, DESIGN §3.4): a YAML mapping; every key is optional
 * and falls back to the documented default below. Unknown keys are errors.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { EngineError } from './errors.ts';

export interface Settings {
  /** FQDN: minimum TTL applied to DNS answers, seconds (reference §5.5; default 0 = the answer's TTL). */
  fqdnMinTtl: number;
  /** FQDN: most IPs kept per name (default 1000). */
  fqdnMaxIpsPerName: number;
  /** DNS: answer for a denied query, REFUSED (default) or NXDOMAIN. */
  dnsDenyResponse: 'REFUSED' | 'NXDOMAIN';
  /** DNS: garbage-collection interval of expired names, seconds (default 60). */
  dnsGcInterval: number;
  /** DNS: longest an answer is held while its IPs reach the maps through the agent, ms (default 100; reference §5.3 step 8). */
  dnsResponseMaxDelayMs: number;
  /** DNS: upstream timeout before the client gets SERVFAIL, ms (default 2000). */
  dnsUpstreamTimeoutMs: number;
  /** DNS: most queries in flight; more are answered SERVFAIL (default 4096). */
  dnsMaxConcurrent: number;
  /** Verdict events per second per CPU the datapath may emit (default 1000; 0 = unlimited). */
  eventRateLimit: number;
  /** Burst of the event rate limit (default 2000). */
  eventBurst: number;
  /** Flows the agent keeps for `membrane observe` (default 20000, at least 10000). */
  flowBufferSize: number;
  /** Proxy: most concurrent connections (default 10000). */
  proxyMaxConnections: number;
  /** Proxy: request header timeout, ms (default 10000). */
  proxyHeaderTimeoutMs: number;
  /** Proxy: idle timeout, ms (default 60000). */
  proxyIdleTimeoutMs: number;
  /** Proxy: largest request header block, bytes (default 16384). */
  proxyMaxHeaderBytes: number;
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  fqdnMinTtl: 0,
  fqdnMaxIpsPerName: 1000,
  dnsDenyResponse: 'REFUSED',
  dnsGcInterval: 60,
  dnsResponseMaxDelayMs: 100,
  dnsUpstreamTimeoutMs: 2000,
  dnsMaxConcurrent: 4096,
  eventRateLimit: 1000,
  eventBurst: 2000,
  flowBufferSize: 20000,
  proxyMaxConnections: 10000,
  proxyHeaderTimeoutMs: 10000,
  proxyIdleTimeoutMs: 60000,
  proxyMaxHeaderBytes: 16384,
});

export class ConfigError extends EngineError {
  constructor(message: string) {
    super(message, 'MBR_ERR_CONFIG');
  }
}

/**
 * Reads a settings file.
 * @param file path, or undefined for the defaults
 * @throws ConfigError naming the file and key
 */
export function readSettings(file?: string): Settings {
  const out: Settings = { ...DEFAULT_SETTINGS };
  if (!file) return out;
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${file}: settings must be a mapping`);
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (!(k in DEFAULT_SETTINGS)) throw new ConfigError(`${file}: ${k}: unknown setting (known: ${Object.keys(DEFAULT_SETTINGS).join(', ')})`);
    const def = (DEFAULT_SETTINGS as unknown as Record<string, unknown>)[k];
    if (k === 'dnsDenyResponse') {
      if (v !== 'REFUSED' && v !== 'NXDOMAIN') throw new ConfigError(`${file}: ${k}: must be REFUSED or NXDOMAIN`);
    } else if (typeof v !== typeof def || (typeof v === 'number' && (!Number.isFinite(v) || v < 0))) {
      throw new ConfigError(`${file}: ${k}: must be a non-negative ${typeof def}`);
    }
    (out as unknown as Record<string, unknown>)[k] = v;
  }
  out.flowBufferSize = Math.max(10000, out.flowBufferSize);
  return out;
}
