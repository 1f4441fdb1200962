import type { TenantSecret } from './generators.js';

/** What a signaling fuzzer run aims at, and what it counts. */

export interface FuzzTarget {
  /** ws://host:port/ws of each replica. */
  wsUrls: string[];
  /** http://host:port of each replica. */
  httpUrls: string[];
  tenant: TenantSecret;
  /** A second tenant: tokens signed with its key must never pass as the first's. */
  other: TenantSecret;
  mint(request: { room: string; identity: string; role: 'agent' | 'end_user' }): Promise<string>;
  maxFrameBytes: number;
}

export interface FuzzStats {
  seed: number;
  frames: number;
  httpRequests: number;
  connections: number;
  batches: number;
  responses: Record<string, number>;
  closes: Record<string, number>;
  http: Record<string, number>;
  /** Credentials (tokens, resume tokens, API keys, URLs) that were accepted though forged. */
  forgedAccepted: string[];
  /** Requests that succeeded with an id of another room. */
  foreignIdsAccepted: string[];
  livenessFailures: string[];
}

export function emptyStats(seed: number): FuzzStats {
  return { seed, frames: 0, httpRequests: 0, connections: 0, batches: 0, responses: {}, closes: {}, http: {}, forgedAccepted: [], foreignIdsAccepted: [], livenessFailures: [] };
}
