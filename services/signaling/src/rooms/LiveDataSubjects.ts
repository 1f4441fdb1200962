import type { Msg, Subscription } from '@nats-io/transport-node';
import { DataSubjectRequest, DataSubjectResult } from '@gateway/proto/gateway/events/v1/events';
import type { RecorderDirectory } from '@gateway/cluster';
import { ErrorCode, GatewayError, callUnary, dataSubjectRequestSchema, decodeChecked, subjects, type Logger, type NatsConnection, type SessionParticipant } from '@gateway/common';
import type { ChatLog } from '../chat/ChatLog.js';
import type { SmartActions } from '../actions/SmartActions.js';
import { erasedEntry, type RoomSessions } from './RoomSessions.js';

/** One replica takes each request: every replica reaches the same records. */
const QUEUE = 'signaling-data-subjects';

type Counts = Omit<DataSubjectResult, 'requestId' | 'errorCode'>;
type Corrections = { phoneNumber?: string; crmContactId?: string; externalId?: string };

const none = (): Counts => ({ rooms: 0, participants: 0, chatMessages: 0, smartActions: 0, attachments: 0, recordings: 0, recordingSegments: 0 });

/**
 * Data-subject requests for what live rooms hold (crm-sync asks, DataSubjectRequest on
 * gateway.<tenant>.data_subject.request; one replica answers with counts, never who):
 *   - erase: in every live room (or room being finished) where the end user took part, their chat
 *     messages are erased from the stream, the Smart Actions that asked them go with their
 *     uploads, the room's recording is discarded (its tracks are mixed, so it cannot be kept
 *     without them), and their session entry is marked erased, so that what they produce until
 *     the room ends is neither kept nor delivered (RoomSessions, finishRoom; the request handlers refuse a
 *     recording, Smart Actions and device keys for them);
 *   - rectify: their contact details in the rooms' session records are corrected before the
 *     session is announced.
 * Both are idempotent: a request repeated after a lost answer finds nothing more to do.
 */
export class LiveDataSubjects {
  private subscription: Subscription | undefined;
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly tenants: () => readonly { name: string }[],
    private readonly roomSessions: RoomSessions,
    private readonly chat: ChatLog,
    private readonly actions: SmartActions,
    private readonly recorders: RecorderDirectory,
    private readonly log: Logger,
  ) {}

  listen(): void {
    const subscription = this.nc.subscribe(subjects.dataSubjectRequest('*'), { queue: QUEUE });
    this.subscription = subscription;
    void (async () => {
      for await (const message of subscription) {
        const handled = this.handle(message).catch((error: unknown) => this.log.error({ err: error }, 'answering a data-subject request failed'));
        this.running.add(handled);
        void handled.finally(() => this.running.delete(handled));
      }
    })();
  }

  private async handle(message: Msg): Promise<void> {
    let request: DataSubjectRequest;
    try {
      request = decodeChecked(DataSubjectRequest, message.data, dataSubjectRequestSchema, 'data-subject request');
      if (message.subject !== subjects.dataSubjectRequest(request.tenant)) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, "the request's tenant is not its subject's");
    } catch (error) {
      const code = GatewayError.from(error).code;
      this.log.warn({ code }, 'a data-subject request was refused');
      if (message.reply) message.respond(DataSubjectResult.encode({ requestId: '', ...none(), errorCode: code }).finish());
      return;
    }
    let counts = none();
    let errorCode = '';
    try {
      // A tenant this replica does not serve has nothing here.
      if (this.tenants().some((t) => t.name === request.tenant)) {
        const action = request.action!;
        counts = action.$case === 'erase' ? await this.erase(request.tenant, request.externalId) : await this.rectify(request.tenant, request.externalId, action.value);
      }
    } catch (error) {
      errorCode = GatewayError.from(error).code;
      this.log.error({ err: error, requestId: request.requestId }, 'a data-subject request failed part-way; it may be repeated');
    }
    this.log.info({ requestId: request.requestId, action: request.action?.$case, ...counts, errorCode }, 'data-subject request served');
    if (message.reply) message.respond(DataSubjectResult.encode({ requestId: request.requestId, ...counts, errorCode }).finish());
  }

  /** Everything the live rooms hold of the end user goes; their sessions are marked. */
  async erase(tenant: string, externalId: string): Promise<Counts> {
    const counts = none();
    for (const session of await this.roomSessions.ofTenant(tenant)) {
      const theirs = session.participants.filter((p) => p.externalId === externalId);
      if (theirs.length === 0) continue;
      counts.rooms++;
      counts.participants += theirs.filter((p) => !isErased(p)).length;
      // Marked first: what they write from now on is recognised as theirs at room end.
      await this.roomSessions.changeParticipants(tenant, session.key, (participants) =>
        participants.some((p) => p.externalId === externalId && !isErased(p)) ? participants.map((p) => (p.externalId === externalId ? erasedEntry(p) : p)) : undefined,
      );
      counts.chatMessages += await this.chat.eraseWrittenBy(
        tenant,
        session.room,
        externalId,
        theirs.map((p) => p.participantId),
      );
      const { actions, attachments } = await this.actions.eraseOf(
        tenant,
        session.room,
        externalId,
        theirs.map((p) => p.participantId),
      );
      counts.smartActions += actions;
      counts.attachments += attachments;
      if (!session.ending) {
        const discarded = await this.discardRecording(tenant, session.room);
        if (discarded) {
          counts.recordings++;
          counts.recordingSegments += discarded.segments;
        }
      }
    }
    return counts;
  }

  /** The room's recording, if one runs: discarded on its recorder, nothing of it kept. */
  private async discardRecording(tenant: string, room: string): Promise<{ segments: number } | undefined> {
    const recording = await this.recorders.recordingOf(tenant, room);
    if (!recording) return undefined;
    const { client } = await this.recorders.clientForRoom(tenant, room);
    try {
      const discarded = await callUnary(client, client.discardRecording, { tenant, recordingId: recording.recordingId, requestedBy: '' }, 60_000);
      return { segments: discarded.segments };
    } catch (error) {
      // It ended meanwhile: its recording.ready names the end user, and crm-sync erases it.
      if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
      throw error;
    }
  }

  /** The end user's contact details, corrected where live sessions hold them. */
  async rectify(tenant: string, externalId: string, corrections: Corrections): Promise<Counts> {
    const counts = none();
    for (const session of await this.roomSessions.ofTenant(tenant)) {
      const theirs = session.participants.filter((p) => p.externalId === externalId && !isErased(p));
      if (theirs.length === 0) continue;
      counts.rooms++;
      counts.participants += theirs.length;
      await this.roomSessions.changeParticipants(tenant, session.key, (participants) =>
        participants.map((p) =>
          p.externalId === externalId && !isErased(p)
            ? {
                ...p,
                ...(corrections.phoneNumber !== undefined ? { phoneNumber: corrections.phoneNumber } : {}),
                ...(corrections.crmContactId !== undefined ? { crmContactId: corrections.crmContactId } : {}),
                ...(corrections.externalId !== undefined ? { externalId: corrections.externalId } : {}),
              }
            : p,
        ),
      );
    }
    return counts;
  }

  /** Stops taking requests; those being served finish. Idempotent. */
  async close(): Promise<void> {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    await Promise.all([...this.running]);
  }
}

function isErased(participant: SessionParticipant): boolean {
  return participant.erased === true;
}
