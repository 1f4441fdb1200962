import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, ErrorCode, GatewayError } from '@gateway/common';

/** A slot claimed this recently belongs to a join still in progress (its record may not be written yet). */
const JOIN_IN_PROGRESS_MS = 60_000;

const slotSchema = z.object({
  participantId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  room: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  claimedAtMs: z.number().int().nonnegative(),
});
type Slot = z.infer<typeof slotSchema>;

/** What became of the session holding a slot. */
export type HolderState = 'live' | 'ended' | 'unknown';

/**
 * How many live sessions each join token holds. A token carries a jti; each session joined with
 * it takes one of its tenant's `sessionsPerToken` slots in KV, created atomically, so replicas
 * racing with one token cannot both take the last slot. A slot whose session is gone (ended
 * without releasing it, its replica died) is taken over by compare-and-set.
 */
export class TokenSessions {
  constructor(private readonly kv: KV) {}

  /**
   * Takes a slot for `participantId`, or throws LIMIT_EXCEEDED. `verdict` tells whether the
   * holder of a slot still has a session: `unknown` when it has no record (a join in progress,
   * or one that died before writing it).
   */
  async claim(tenant: string, tokenId: string, slot: Omit<Slot, 'claimedAtMs'>, limit: number, verdict: (holder: Slot) => Promise<HolderState>): Promise<void> {
    const value = () => JSON.stringify({ ...slot, claimedAtMs: Date.now() } satisfies Slot);
    for (let index = 0; index < limit; index++) {
      const key = `${tenant}.${tokenId}.${index}`;
      try {
        await this.kv.create(key, value());
        return;
      } catch {
        // Taken (or a deleted slot's marker): look at its holder.
      }
      const entry = await this.kv.get(key);
      if (!entry) continue;
      const holder = isLiveEntry(entry) ? readSlot(entry.value) : undefined;
      const state = holder ? await verdict(holder) : 'ended';
      const free = state === 'ended' || (state === 'unknown' && Date.now() - holder!.claimedAtMs > JOIN_IN_PROGRESS_MS);
      if (!free) continue;
      try {
        await this.kv.update(key, value(), entry.revision);
        return;
      } catch {
        // Someone else took it first.
      }
    }
    throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, limit === 1 ? 'this join token is already in use by a live session' : `this join token already holds ${limit} live sessions`);
  }

  /** Gives back the slot `participantId` holds, if any. */
  async release(tenant: string, tokenId: string, participantId: string, limit: number): Promise<void> {
    for (let index = 0; index < limit; index++) {
      const key = `${tenant}.${tokenId}.${index}`;
      const entry = await this.kv.get(key);
      if (!isLiveEntry(entry)) continue;
      if (readSlot(entry.value)?.participantId !== participantId) continue;
      await this.kv.delete(key, { previousSeq: entry.revision }).catch(() => undefined);
      return;
    }
  }
}

function readSlot(bytes: Uint8Array): Slot | undefined {
  try {
    const parsed = slotSchema.safeParse(JSON.parse(new TextDecoder().decode(bytes)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
