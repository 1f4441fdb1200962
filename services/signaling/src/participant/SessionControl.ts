import type { Msg, Subscription } from '@nats-io/transport-node';
import { SessionControl as ControlMessage, SessionControlReply } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo, TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, decodeChecked, sessionControlReplySchema, sessionControlSchema, subjects, type Logger, type NatsConnection } from '@gateway/common';
import type { ParticipantStore } from '@gateway/cluster';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { ParticipantSession } from './ParticipantSession.js';
import type { Removal, SessionRegistry } from './SessionRegistry.js';
import { type DetailsChange, updateDetails } from './details.js';
import { setTrackPaused } from './tracks.js';

/**
 * How long a command waits for the replica holding the session: longer than what that replica
 * waits for (a mute's SFU call, 10 s at most; a removal answers before its SFU cleanup).
 */
const CONTROL_TIMEOUT_MS = 15_000;

/** How long a removal waits for a replica that took the session over to close its socket (no SFU call there). */
const FORWARD_TIMEOUT_MS = 3_000;

type Action = NonNullable<ControlMessage['action']>;

/** What a command's holder answers with: the muted track, or the updated participant. */
interface Outcome {
  track?: TrackInfo | undefined;
  participant?: ParticipantInfo | undefined;
}

export interface SessionControlDeps {
  nc: NatsConnection;
  sessions: Pick<SessionRegistry, 'get' | 'remove'>;
  /** Read when a removal got no answer: a record gone or marked removed means it happened. */
  store: Pick<ParticipantStore, 'get'>;
  hub: Pick<RoomHub, 'publish'>;
  log: Logger;
  timeoutMs?: number;
}

/**
 * The room API's reach into a participant's session, wherever it is held: a session held here is
 * acted on at once; any other goes to the replica holding it, as a SessionControl request on
 * `gateway.<tenant>.session.<participant>.control`, which every replica hears and only the holder
 * answers (as session takeovers reach the old owner). A disconnected session within its resume
 * window is held too, so it is reached as well.
 */
export class SessionControl {
  private subscription: Subscription | undefined;

  constructor(private readonly deps: SessionControlDeps) {}

  /**
   * Removes the participant for good (SessionRegistry.remove): answered once its record is marked
   * removed, its token revoked and its socket closed (4005); media, record and the room's notice
   * follow. A participant already gone counts as removed.
   */
  async remove(tenant: string, room: string, participantId: string): Promise<void> {
    // One that left since it was listed (ending a room) is done without waiting for an answer nobody gives.
    if (!this.heldSession(tenant, room, participantId) && (await this.removedOrGone(tenant, room, participantId))) return;
    // A session changing hands (a resume on another replica) as the request goes out can miss
    // both holders once; asked again, the new one answers.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(tenant, room, participantId, { $case: 'remove', value: {} });
        return;
      } catch (error) {
        // No answer in time: the holder may have got it done anyway, or the participant left meanwhile.
        if (await this.removedOrGone(tenant, room, participantId)) return;
        if (attempt === 2 || !(error instanceof GatewayError && error.code === ErrorCode.UNAVAILABLE)) throw error;
      }
    }
  }

  private async removedOrGone(tenant: string, room: string, participantId: string): Promise<boolean> {
    try {
      const stored = await this.deps.store.get(tenant, room, participantId);
      return !stored || stored.record.removedAtMs > 0;
    } catch {
      return false;
    }
  }

  /** Pauses one of the participant's producers on the SFU; the room sees it paused, the participant is told (trackMuted). */
  async mute(tenant: string, room: string, participantId: string, producerId: string): Promise<TrackInfo> {
    const { track } = await this.send(tenant, room, participantId, { $case: 'mute', value: { producerId } });
    if (!track) throw new GatewayError(ErrorCode.INTERNAL, 'the mute was answered without its track');
    return track;
  }

  /** Changes the participant's name or metadata; the room is told (participantUpdated). */
  async update(tenant: string, room: string, participantId: string, change: DetailsChange): Promise<ParticipantInfo> {
    const { participant } = await this.send(tenant, room, participantId, { $case: 'update', value: change });
    if (!participant) throw new GatewayError(ErrorCode.INTERNAL, 'the update was answered without the participant');
    return participant;
  }

  /** Answers the commands for the sessions held here. */
  listen(): void {
    const subscription = this.deps.nc.subscribe(subjects.sessionControl('*', '*'));
    this.subscription = subscription;
    void (async () => {
      for await (const message of subscription) void this.answer(message).catch((error: unknown) => this.deps.log.error({ err: error }, 'answering a session control failed'));
    })().catch((error: unknown) => this.deps.log.error({ err: error }, 'listening for session control stopped'));
  }

  close(): void {
    this.subscription?.unsubscribe();
  }

  private async send(tenant: string, room: string, participantId: string, action: Action, timeoutMs = this.deps.timeoutMs ?? CONTROL_TIMEOUT_MS): Promise<Outcome> {
    const held = this.heldSession(tenant, room, participantId);
    if (held) return this.apply(held, action);
    const request = ControlMessage.encode({ participantId, room, action }).finish();
    let reply: SessionControlReply;
    try {
      const message = await this.deps.nc.request(subjects.sessionControl(tenant, participantId), request, { timeout: timeoutMs });
      reply = decodeChecked(SessionControlReply, message.data, sessionControlReplySchema, 'session control reply');
    } catch (error) {
      // Nobody holds the session: its replica stopped (the stale sweep removes it) or it just ended.
      throw new GatewayError(ErrorCode.UNAVAILABLE, "the participant's session did not answer; try again", { cause: error });
    }
    if (reply.code === '') return { track: reply.track, participant: reply.participant };
    throw new GatewayError(GatewayError.isCode(reply.code) ? reply.code : ErrorCode.INTERNAL, reply.message);
  }

  /** A session held here, of that tenant and room. */
  private heldSession(tenant: string, room: string, participantId: string): ParticipantSession | undefined {
    const session = this.deps.sessions.get(participantId);
    return session && !session.ended && session.tenant === tenant && session.room === room ? session : undefined;
  }

  private async apply(session: ParticipantSession, action: Action): Promise<Outcome> {
    switch (action.$case) {
      case 'remove': {
        const removal = await this.deps.sessions.remove(session);
        // Answered now; the SFU cleanup (up to its 10 s deadline) goes on behind the answer.
        void this.completeRemoval(session, action, removal).catch((error: unknown) => session.log.warn({ err: error }, 'cleaning up after a removal failed'));
        return {};
      }
      case 'mute': {
        const track = await setTrackPaused(session, this.deps.hub, action.value.producerId, true);
        session.notify({ $case: 'trackMuted', value: { producerId: track.producerId, by: 'server' } });
        return { track };
      }
      case 'update':
        // The customer's backend may rename anyone: canUpdateMetadata is about the participant's own requests.
        return { participant: await updateDetails(session, this.deps.hub, action.value) };
    }
  }

  /**
   * The rest of a removal. Another replica that took the session over before the mark closes its
   * socket first (4005; it answers quickly, or has already let go on finding the mark), then the
   * media, the record and the room's notice.
   */
  private async completeRemoval(session: ParticipantSession, action: Action, removal: Removal): Promise<void> {
    if (removal.otherOwner) await this.send(session.tenant, session.room, session.participantId, action, FORWARD_TIMEOUT_MS).catch(() => undefined);
    await removal.finish();
  }

  /** Answers a command when the session is held here; other replicas stay silent. */
  private async answer(message: Msg): Promise<void> {
    let command: ControlMessage;
    try {
      command = decodeChecked(ControlMessage, message.data, sessionControlSchema, 'session control');
    } catch (error) {
      this.deps.log.warn({ err: error }, 'bad session control message');
      return;
    }
    // The tenant is the subject's (the requester's permission), never the message's.
    const tenant = message.subject.split('.')[1] ?? '';
    if (message.subject !== subjects.sessionControl(tenant, command.participantId)) return;
    const session = this.heldSession(tenant, command.room, command.participantId);
    if (!session || !command.action) return;
    let reply: SessionControlReply;
    try {
      const outcome = await this.apply(session, command.action);
      reply = { code: '', message: '', track: outcome.track, participant: outcome.participant };
    } catch (error) {
      // The code and message as they are: the requester's HTTP boundary maps them (toClientError) once.
      const failure = GatewayError.from(error);
      reply = { code: failure.code, message: failure.message.slice(0, 512), track: undefined, participant: undefined };
    }
    try {
      message.respond(SessionControlReply.encode(reply).finish());
    } catch (error) {
      this.deps.log.warn({ err: error }, 'answering a session control failed');
    }
  }
}
