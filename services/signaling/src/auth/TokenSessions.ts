import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, ErrorCode, GatewayError, type Logger } from '@gateway/common';
import { JoinMarks } from './JoinMarks.js';

/** A slot claimed this recently belongs to a join still in progress (its record may not be written yet). */
const JOIN_IN_PROGRESS_MS = 60_000;

const slotSchema = z.object({
  participantId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  room: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  claimedAtMs: z.number().int().nonnegative(),
});
type Slot = z.infer<typeof slotSchema>;

/** A revoked token's tombstone, and a closed room's mark: refused until `untilMs`. */
const markSchema = z.object({ untilMs: z.number().int().nonnegative() });

/** What became of the session holding a slot. */
export type HolderState = 'live' | 'ended' | 'unknown';

/**
 * How many live sessions each join token holds. A token carries a jti; each session joined with
 * it takes one of its tenant's `sessionsPerToken` slots in KV, created atomically, so replicas
 * racing with one token cannot both take the last slot. A slot whose session is gone (ended
 * without releasing it, its replica died) is taken over by compare-and-set.
 *
 * The same bucket keeps what stops joins for a while (keys no token id can collide with: a token
 * id is base64url, never `=`): `<tenant>.<tokenId>.revoked`, a removed participant's token, until
 * the token expires; `<tenant>.=room.<room>`, a room the room API ended, for ROOM_CLOSED_MS. The
 * bucket outlives rooms (its TTL, 8 days, is longer than any token), is written only by
 * signaling and is not one the residue scan reads; each mark carries its own end, checked here.
 */
export class TokenSessions {
  /**
   * `marks`: the revoked tokens' and closed rooms' marks kept from watches of their keys, so a
   * join reads neither (without them, each join reads both from the bucket).
   */
  constructor(
    private readonly kv: KV,
    private readonly marks?: { revoked: JoinMarks; closedRooms: JoinMarks },
  ) {}

  /** Token sessions whose marks are kept from watches (JoinMarks), read to their end before this resolves. */
  static async open(kv: KV, log: Logger): Promise<TokenSessions> {
    const readMark = (value: Uint8Array) => readJson(value, markSchema);
    const [revoked, closedRooms] = await Promise.all([JoinMarks.watch(kv, revokedKey('*', '*'), readMark, log), JoinMarks.watch(kv, closedRoomKey('*', '*'), readMark, log)]);
    return new TokenSessions(kv, { revoked, closedRooms });
  }

  close(): void {
    this.marks?.revoked.close();
    this.marks?.closedRooms.close();
  }

  /** Refuses every later join with the token (REMOVED) until `untilMs` (the token's expiry). */
  async revoke(tenant: string, tokenId: string, untilMs: number): Promise<void> {
    await this.putMark(revokedKey(tenant, tokenId), untilMs, this.marks?.revoked);
  }

  /** Refuses joins of the room (ROOM_ENDED) for `forMs`. */
  async closeRoom(tenant: string, room: string, forMs: number): Promise<void> {
    await this.putMark(closedRoomKey(tenant, room), Date.now() + forMs, this.marks?.closedRooms);
  }

  private async putMark(key: string, untilMs: number, kept: JoinMarks | undefined): Promise<void> {
    const value = new TextEncoder().encode(JSON.stringify({ untilMs }));
    const revision = await this.kv.put(key, value);
    // Honoured here at once, before the watch brings it back.
    kept?.note(key, value, revision);
  }

  /** Throws ROOM_ENDED while the room's closed mark lasts; an expired mark is deleted. */
  async assertRoomOpen(tenant: string, room: string): Promise<void> {
    if (await this.markHolds(closedRoomKey(tenant, room), this.marks?.closedRooms)) {
      throw new GatewayError(ErrorCode.ROOM_ENDED, 'the room was ended moments ago; try again later with a new room');
    }
  }

  /** Whether the mark under `key` holds: looked up in the marks kept, or read when they are not current. */
  private async markHolds(key: string, kept: JoinMarks | undefined): Promise<boolean> {
    const known = kept ? kept.lookUp(key) : 'unknown';
    if (known !== 'unknown') {
      if (!known) return false;
      if (known.untilMs > Date.now()) return true;
      kept?.forget(key);
      await this.kv.delete(key, { previousSeq: known.revision }).catch(() => undefined);
      return false;
    }
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return false;
    const mark = readJson(entry.value, markSchema);
    if (mark && mark.untilMs > Date.now()) return true;
    await this.kv.delete(key, { previousSeq: entry.revision }).catch(() => undefined);
    return false;
  }

  /**
   * Takes a slot for `participantId`, or throws LIMIT_EXCEEDED. `verdict` tells whether the
   * holder of a slot still has a session: `unknown` when it has no record (a join in progress,
   * or one that died before writing it).
   */
  async claim(tenant: string, tokenId: string, slot: Omit<Slot, 'claimedAtMs'>, limit: number, verdict: (holder: Slot) => Promise<HolderState>): Promise<void> {
    if (await this.markHolds(revokedKey(tenant, tokenId), this.marks?.revoked)) {
      throw new GatewayError(ErrorCode.REMOVED, 'this join token belongs to a participant removed from the room; it joins no more');
    }
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

const revokedKey = (tenant: string, tokenId: string) => `${tenant}.${tokenId}.revoked`;
const closedRoomKey = (tenant: string, room: string) => `${tenant}.=room.${room}`;

function readSlot(bytes: Uint8Array): Slot | undefined {
  return readJson(bytes, slotSchema);
}

function readJson<T>(bytes: Uint8Array, schema: z.ZodType<T>): T | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(new TextDecoder().decode(bytes)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
