import type { ChatMessage as ChatMessageInfo, JoinResponse, ParticipantInfo, RecordingStatus, SmartAction as SmartActionInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Chat } from '../chat/Chat.js';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Publisher } from '../media/Publisher.js';
import type { Subscriber } from '../media/Subscriber.js';
import type { Transports } from '../media/Transports.js';
import { applyNotification, type NotificationTargets } from '../notifications.js';
import type { Recording } from '../recording/Recording.js';
import type { Roster } from '../Roster.js';
import type { NotificationEvent } from '../signaling/Socket.js';
import type { SmartActions } from '../smartActions/SmartActions.js';
import type { Emit } from '../events.js';
import type { Grants, RoomEvents, Source } from '../types.js';

/** Room state held back until the app had a chance to add listeners (see Room.connect()). */
interface HeldBack {
  participants: ParticipantInfo[];
  recording: RecordingStatus | undefined;
  messages: ChatMessageInfo[];
  smartActions: SmartActionInfo[];
  notifications: NotificationEvent[];
}

const nothingHeldBack = (): HeldBack => ({ participants: [], recording: undefined, messages: [], smartActions: [], notifications: [] });

/** What keeping a room in line with the server needs of it: its parts, and where the join's own state goes. */
export interface RoomSyncParts {
  isClosed(): boolean;
  roster: Roster;
  transports: Transports;
  publisher: Publisher;
  subscriber: Subscriber;
  recorder: Recording;
  chat: Chat;
  actions: SmartActions;
  emit: Emit<Pick<RoomEvents, 'localTrackMuted' | 'data'>>;
  /** Someone else (or we) speak loudest now. */
  setActiveSpeaker(participantId: string): void;
  /** The room's name, the token's grants and the active speaker, from each join answer. */
  joined(state: { name: string; grants: Grants; activeSpeakerId: string }): void;
}

/**
 * Keeps a room in line with the server's view of the session: `sync()` runs after the first
 * join, after a resume and after a rejoin, and reconciles participants, tracks, transports and
 * producers, so there is one path to a consistent state whatever happened while the connection
 * was away; it hands each notification to the part of the room it concerns. Until `announce()`
 * (the app had a chance to add listeners), what the join answer and the notifications bring is
 * held back, then replayed in order.
 */
export class RoomSync {
  private announced = false;
  private heldBack = nothingHeldBack();
  /** Where each notification goes (notifications.ts). */
  private readonly targets: NotificationTargets;

  constructor(private readonly parts: RoomSyncParts) {
    const { roster, subscriber, recorder, chat, actions, publisher, emit } = parts;
    this.targets = {
      roster,
      subscriber,
      recorder,
      chat,
      actions,
      setActiveSpeaker: (id) => parts.setActiveSpeaker(id),
      layersWanted: (producerId, maxSpatialLayer) => publisher.layersWanted(producerId, maxSpatialLayer),
      localTrackMuted: (producerId) => {
        const muted = publisher.mutedByServer(producerId);
        if (muted) emit('localTrackMuted', { ...muted, by: 'server' });
      },
      data: (message) =>
        emit('data', {
          topic: message.topic,
          payload: message.payload,
          sentAtMs: message.sentAtMs,
          // Undefined for the customer's backend (no participant id).
          participant: message.participantId ? roster.participantOf(message.participantId) : undefined,
        }),
    };
  }

  /** Brings everything in line with a fresh JoinResponse (first join, resume or rejoin). */
  async sync(response: JoinResponse): Promise<void> {
    const { roster, transports, publisher, subscriber, recorder, chat, actions } = this.parts;
    if (this.parts.isClosed()) throw new GatewayError(ErrorCode.ROOM_CLOSED, 'the room was left');
    const me = response.participant;
    if (!me) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the join response names no participant');
    roster.setLocal(me, publisher.localTracks, publisher.publications);
    const grants: Grants = {
      canPublish: response.grants?.canPublish ?? false,
      canSubscribe: response.grants?.canSubscribe ?? false,
      sources: (response.grants?.sources ?? []) as Source[],
      canRecord: response.grants?.canRecord ?? false,
    };
    this.parts.joined({ name: response.room, grants, activeSpeakerId: response.activeSpeakerParticipantId ?? '' });
    const held = this.heldBack;
    if (this.announced) recorder.update(response.recording);
    else held.recording = response.recording;
    // The chat history: merged, so messages seen before are not announced again, those missed
    // while away are, and redactions made meanwhile are applied.
    if (this.announced) for (const message of response.messages) chat.take(message);
    else held.messages = held.messages.concat(response.messages);
    // Smart Actions likewise: those that changed while away are announced, the rest not again.
    if (this.announced) for (const action of response.smartActions) actions.take(action);
    else held.smartActions = held.smartActions.concat(response.smartActions);

    // Who is here first, before any await: notifications from now on are newer than this snapshot.
    const others = roster.othersIn(response.participants);
    if (this.announced) roster.reconcile(others);
    else {
      held.participants = others;
      held.notifications = [];
    }

    await transports.loadDevice(response.routerRtpCapabilities ?? {});
    await transports.useIceServers(response.iceServers ?? []);
    const kept = await transports.ensure(new Set(response.transportIds), { send: grants.canPublish, recv: grants.canSubscribe });
    await publisher.reconcile(me.tracks);
    if (this.announced) await subscriber.pump();
    // The network may have changed under the media too (a resumed session keeps its transports).
    for (const transport of kept) await transports.restartIce(transport);
  }

  /**
   * Announces the participants present at join and replays what arrived since, then receives.
   * Runs once, on the task after connect() resolved or earlier when an answer to the app needs it.
   */
  announce(): void {
    if (this.parts.isClosed() || this.announced) return;
    this.announced = true;
    const held = this.heldBack;
    this.heldBack = nothingHeldBack();
    this.parts.roster.reconcile(held.participants);
    this.parts.recorder.update(held.recording);
    for (const message of held.messages) this.parts.chat.take(message);
    for (const action of held.smartActions) this.parts.actions.take(action);
    for (const event of held.notifications) this.notify(event);
    void this.parts.subscriber.pump();
  }

  /** A notification from the server: applied, or held back until announce(). */
  notify(event: NotificationEvent): void {
    if (this.parts.isClosed()) return;
    if (!this.announced) {
      this.heldBack.notifications.push(event);
      return;
    }
    applyNotification(event, this.targets);
  }
}
