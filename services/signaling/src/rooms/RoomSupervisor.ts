import type { RoomSessionRecord } from '@gateway/proto/gateway/events/v1/events';
import { callUnary, type Logger, sleepBackoff } from '@gateway/common';
import type { ParticipantStore, SfuDirectory } from '@gateway/cluster';
import { isPreflightRoom } from '../auth/tokens.js';
import { finishRoom, type RoomEndDeps } from './finishRoom.js';
import type { RoomHub } from './RoomHub.js';
import type { RoomSessions } from './RoomSessions.js';

/** How often a replica checks that the media nodes of its rooms are alive. */
const NODE_CHECK_MS = 2_000;
/** Attempts at finishing a room's session before it is left to the sweep. */
const FINISH_ATTEMPTS = 5;

/** A session this replica holds, as the supervisor sees it. */
export interface SupervisedSession {
  readonly participantId: string;
  readonly nodeId: string;
}

/** The sessions this replica holds (SessionRegistry). */
export interface HeldSessions {
  inRoom(tenant: string, room: string): SupervisedSession[];
  holds(participantId: string): boolean;
  /** The session's media node is gone: its client must join again. */
  abandon(session: SupervisedSession, reason: string): Promise<void>;
  /** Every session held here. */
  all(): Array<SupervisedSession & { readonly tenant: string; readonly room: string }>;
}

export interface RoomSupervisorDeps {
  sessions: HeldSessions;
  store: Pick<ParticipantStore, 'list' | 'stale' | 'delete'>;
  directory: Pick<SfuDirectory, 'node' | 'clientFor' | 'forgetPlacement' | 'forgetRoom'>;
  hub: Pick<RoomHub, 'servedRooms' | 'publish'>;
  roomSessions: Pick<RoomSessions, 'rooms' | 'claim' | 'current' | 'participantsOf' | 'announce' | 'finished' | 'takeStale'>;
  /** Gives back the join token's slot of a participant removed here. */
  releaseTokenSlot(tenant: string, tokenId: string, participantId: string): Promise<void>;
  roomEnd: RoomEndDeps;
  /** How long a room session may stay unfinished before a sweep finishes it. */
  sessionFinishStaleMs: number;
  log: Logger;
}

/**
 * Watches the rooms of the cluster from this replica: media nodes that died, participants whose
 * replica died, rooms nobody serves any more, and room ends, where the last participant's
 * leaving turns the conversation into its transcript and announces the session. Every replica
 * runs the same sweeps; claims in KV make each room end happen once. Participants of a dead
 * replica are swept when its liveness key goes (`replicasDeparted`), and at start for the rooms
 * of replicas that stopped before: nothing is swept on a timer while every replica lives.
 */
export class RoomSupervisor {
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(private readonly deps: RoomSupervisorDeps) {}

  start(): void {
    this.timers.push(setInterval(() => void this.checkNodes(), NODE_CHECK_MS));
    this.timers.push(setInterval(() => void this.sweepUnfinishedSessions(), this.deps.sessionFinishStaleMs / 2));
    // Rooms a stopped replica left behind are ended at start too.
    void this.sweepAbandonedRooms();
  }

  /** Stops the sweeps; a room end under way gives up its retries (the next replica's sweep finishes it). */
  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
  }

  /** A participant left for good: the room ends if it was the last. */
  participantGone(tenant: string, room: string): void {
    void this.finishConversationIfEmpty(tenant, room);
  }

  /** Other replicas departed: the participants they held in the rooms served here, and the rooms nobody serves, are swept. */
  replicasDeparted(): void {
    void this.sweepStaleRecords().then(() => this.sweepAbandonedRooms());
  }

  /**
   * The media nodes of the sessions held here, each read once: the clients of a node that is
   * gone must rejoin, in every room of theirs.
   */
  private async checkNodes(): Promise<void> {
    const { directory, hub, sessions, log } = this.deps;
    const byNode = new Map<string, Set<string>>();
    for (const s of sessions.all()) {
      const rooms = byNode.get(s.nodeId) ?? byNode.set(s.nodeId, new Set()).get(s.nodeId)!;
      rooms.add(`${s.tenant}.${s.room}`);
    }
    for (const [nodeId, rooms] of byNode) {
      try {
        if (await directory.node(nodeId)) continue;
      } catch (error) {
        log.warn({ err: error, nodeId }, 'node check failed');
        continue;
      }
      for (const key of rooms) {
        const [tenant = '', room = ''] = key.split('.');
        try {
          log.warn({ room: `${tenant}/${room}`, nodeId }, 'media node of the room is gone; clients must rejoin');
          await directory.forgetPlacement(tenant, room, nodeId);
          hub.publish(tenant, room, { $case: 'roomClosed', value: { reason: 'node_gone', nodeId } });
          for (const s of sessions.inRoom(tenant, room)) if (s.nodeId === nodeId) await sessions.abandon(s, 'node_gone');
        } catch (error) {
          log.warn({ err: error, room: `${tenant}/${room}` }, 'room check failed');
        }
      }
    }
  }

  /**
   * Participants of the rooms served here whose records went stale belong to a replica that
   * died: their media is closed and the room is told they left.
   */
  private async sweepStaleRecords(): Promise<void> {
    for (const { tenant, room } of this.deps.hub.servedRooms()) {
      try {
        for (const participantId of await this.removeStaleParticipants(tenant, room)) {
          this.deps.hub.publish(tenant, room, { $case: 'participantLeft', value: { participantId, reason: 'disconnected' } });
          void this.finishConversationIfEmpty(tenant, room);
        }
      } catch (error) {
        this.deps.log.warn({ err: error, room: `${tenant}/${room}` }, 'sweeping stale participants failed');
      }
    }
  }

  /**
   * Removes the room's participants whose records went stale (and that no session here holds):
   * their media closed at the SFU, their records deleted, their token slots released. Returns
   * their ids.
   */
  private async removeStaleParticipants(tenant: string, room: string): Promise<string[]> {
    const { store, directory, sessions } = this.deps;
    const removed: string[] = [];
    for (const record of await store.stale(tenant, room)) {
      const participantId = record.info?.participantId;
      if (!participantId || sessions.holds(participantId)) continue;
      const client = directory.clientFor(record.nodeId);
      if (client) await callUnary(client, client.closeParticipant, { room: { tenant, room }, participantId }).catch(() => undefined);
      await store.delete(tenant, room, participantId);
      if (record.tokenId) await this.deps.releaseTokenSlot(tenant, record.tokenId, participantId).catch(() => undefined);
      removed.push(participantId);
    }
    return removed;
  }

  /**
   * Rooms no replica serves any more (their replica stopped or died, and nobody resumed): their
   * participants' records go stale, then the room ends here like any other, its session finished.
   */
  private async sweepAbandonedRooms(): Promise<void> {
    try {
      const served = new Set(this.deps.hub.servedRooms().map(({ tenant, room }) => `${tenant}.${room}`));
      for (const { tenant, room } of await this.deps.roomSessions.rooms()) {
        if (served.has(`${tenant}.${room}`) || this.stopped) continue;
        await this.removeStaleParticipants(tenant, room);
        await this.finishConversationIfEmpty(tenant, room);
      }
    } catch (error) {
      this.deps.log.warn({ err: error }, 'sweeping abandoned rooms failed');
    }
  }

  /** Room sessions left unfinished (a finisher that gave up or died). */
  private async sweepUnfinishedSessions(): Promise<void> {
    try {
      for (const { tenant, room, record } of await this.deps.roomSessions.takeStale(this.deps.sessionFinishStaleMs)) {
        this.deps.log.warn({ room: `${tenant}/${room}` }, 'finishing a room session left unfinished');
        await this.finishSession(tenant, room, record);
      }
    } catch (error) {
      this.deps.log.warn({ err: error }, 'sweeping unfinished room sessions failed');
    }
  }

  /** The last participant left: the room's conversation becomes its transcript. */
  private async finishConversationIfEmpty(tenant: string, room: string): Promise<void> {
    let claimed: RoomSessionRecord | undefined;
    try {
      if ((await this.deps.store.list(tenant, room)).length > 0) return;
      // One finisher per room end, whichever replica or leave got here first.
      claimed = await this.deps.roomSessions.claim(tenant, room);
    } catch (error) {
      this.deps.log.error({ err: error, room: `${tenant}/${room}` }, 'checking whether the room ended failed');
      return;
    }
    if (claimed) await this.finishSession(tenant, room, claimed);
    // A pre-call check's room has no session to finish: its placement goes with its participant.
    else if (isPreflightRoom(room))
      await this.deps.directory.forgetRoom(tenant, room).catch((error) => this.deps.log.warn({ err: error, room: `${tenant}/${room}` }, 'forgetting the room placement failed'));
  }

  /**
   * Turns an ended room's conversation into its transcript and announces the session. What
   * fails here is retried a few times, then left to the sweep: the session's ending record and
   * the conversation stay stored (encrypted) until it succeeds.
   */
  private async finishSession(tenant: string, room: string, claimed: RoomSessionRecord): Promise<void> {
    const { roomSessions, store, directory, log } = this.deps;
    for (let attempt = 1; ; attempt++) {
      try {
        // Read again: an erasure or a rectification may have changed it since it was claimed.
        const current = await roomSessions.current(tenant, room, claimed);
        const participants = await roomSessions.participantsOf(tenant, current);
        const conversationId = await finishRoom(this.deps.roomEnd, tenant, room, participants);
        await roomSessions.announce(tenant, room, current, conversationId);
        await roomSessions.finished(tenant, room, claimed);
        // The room's placement ends with it (a joiner meanwhile keeps one: keepPlacement).
        if ((await store.list(tenant, room)).length === 0)
          await directory.forgetRoom(tenant, room).catch((error) => log.warn({ err: error, room: `${tenant}/${room}` }, 'forgetting the room placement failed'));
        return;
      } catch (error) {
        log.error({ err: error, room: `${tenant}/${room}`, attempt }, 'finishing the room session failed');
        if (attempt >= FINISH_ATTEMPTS || this.stopped) return;
        await sleepBackoff(attempt, { initialMs: 1_000, maxMs: 60_000 });
      }
    }
  }
}
