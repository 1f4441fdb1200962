import type { RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { RecordingStatus, TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, type Logger } from '@gateway/common';
import type { ParticipantStore, RecorderDirectory } from '@gateway/cluster';
import type { DetailsChange } from '../participant/details.js';
import type { SessionControl } from '../participant/SessionControl.js';
import type { ErasedIn } from '../requests/erasure.js';
import { controlRoomRecording, refuseRecordingIfErased, startRoomRecording } from './recording.js';
import type { RoomHub } from './RoomHub.js';

/** A room as the room API lists it. */
export interface RoomSummary {
  room: string;
  participants: number;
}

/** A track as the room API shows it: `trackId` is the producer id the SDK and the room events use. */
export interface TrackView {
  trackId: string;
  source: string;
  kind: string;
  muted: boolean;
}

/** A participant as the room API shows it: ids, role, identity and tracks, never contact details. */
export interface ParticipantView {
  participantId: string;
  identity: string;
  role: string;
  joinedAtMs: number;
  /** False while its client is away within the resume window. */
  name: string;
  metadata: string;
  connected: boolean;
  tracks: TrackView[];
}

export interface DataMessageInput {
  topic?: string | undefined;
  payload: string;
}

export interface RoomServiceDeps {
  store: Pick<ParticipantStore, 'rooms' | 'list' | 'get' | 'isStale'>;
  control: Pick<SessionControl, 'remove' | 'mute' | 'update'>;
  hub: Pick<RoomHub, 'publish'>;
  recorders: RecorderDirectory;
  recordingOptions(tenant: string): RecordingOptions;
  erasedIn: ErasedIn;
  /** Refuses joins of the room for `forMs` (TokenSessions.closeRoom). */
  closeRoom(tenant: string, room: string, forMs: number): Promise<void>;
  log: Logger;
}

/**
 * How long a room the room API ended refuses joins (ROOM_ENDED): long enough for joins already
 * under way and SDKs reconnecting to meet it, short enough that the name can soon be used again.
 */
export const ROOM_CLOSED_MS = 30_000;
/** How many times ending a room lists it again for participants who joined while it was being ended. */
const END_ROOM_PASSES = 3;

/**
 * What a tenant's backend may do to its live rooms (the room API, http/rooms.ts), over what the
 * replicas already share: rooms and participants as the participant store holds them, sessions
 * through SessionControl (wherever they are held), recording as an agent's request does it,
 * data messages on the room-event bus. A room exists while it has participants; ending it removes
 * them all, and the last one out runs the room end (RoomSupervisor, finishRoom) as always.
 */
export class RoomService {
  constructor(private readonly deps: RoomServiceDeps) {}

  async listRooms(tenant: string): Promise<RoomSummary[]> {
    const rooms = await this.deps.store.rooms(tenant);
    return [...rooms].map(([room, participants]) => ({ room, participants })).sort((a, b) => (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
  }

  async listParticipants(tenant: string, room: string): Promise<ParticipantView[]> {
    return (await this.present(tenant, room)).map(participantView).sort((a, b) => a.joinedAtMs - b.joinedAtMs);
  }

  async removeParticipant(tenant: string, room: string, participantId: string): Promise<void> {
    await this.participant(tenant, room, participantId);
    await this.deps.control.remove(tenant, room, participantId);
    this.deps.log.info({ room: `${tenant}/${room}`, participantId }, 'room API: participant removed');
  }

  /** Changes a participant's name or metadata; the room is told (participantUpdated). */
  async updateParticipant(tenant: string, room: string, participantId: string, change: DetailsChange): Promise<ParticipantView> {
    const record = await this.participant(tenant, room, participantId);
    const updated = await this.deps.control.update(tenant, room, participantId, change);
    this.deps.log.info({ room: `${tenant}/${room}`, participantId }, 'room API: participant updated');
    return participantView({ ...record, info: { ...updated, tracks: record.info?.tracks ?? [] } });
  }

  /** Mutes one published track; muting a muted track changes nothing. Unmuting is the participant's own choice. */
  async muteTrack(tenant: string, room: string, participantId: string, trackId: string): Promise<TrackView> {
    const record = await this.participant(tenant, room, participantId);
    const track = record.info?.tracks.find((t) => t.producerId === trackId);
    if (!track) throw new GatewayError(ErrorCode.NOT_FOUND, 'the participant publishes no such track');
    if (track.paused) return trackView(track);
    const muted = await this.deps.control.mute(tenant, room, participantId, trackId);
    this.deps.log.info({ room: `${tenant}/${room}`, participantId, producerId: trackId }, 'room API: track muted');
    return trackView(muted);
  }

  /**
   * Ends the room: joins are refused for ROOM_CLOSED_MS (ROOM_ENDED), then everyone is removed
   * (for good: REMOVED to their tokens), listing again for whoever joined meanwhile. Returns how
   * many were removed. A participant that could not be reached fails the request (repeating it
   * removes the rest); one that left meanwhile counts as done.
   */
  async endRoom(tenant: string, room: string): Promise<number> {
    let present = await this.present(tenant, room);
    await this.deps.closeRoom(tenant, room, ROOM_CLOSED_MS);
    let removed = 0;
    for (let pass = 1; pass <= END_ROOM_PASSES && present.length > 0; pass++) {
      const outcomes = await Promise.allSettled(present.map((record) => this.deps.control.remove(tenant, room, record.info!.participantId)));
      const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected' && !isGone(o.reason));
      if (failed.length > 0) {
        this.deps.log.warn({ room: `${tenant}/${room}`, failed: failed.length, err: failed[0]!.reason }, 'ending a room left participants');
        throw new GatewayError(ErrorCode.UNAVAILABLE, `${failed.length} of ${present.length} participants could not be removed; try again`, { cause: failed[0]!.reason });
      }
      removed += present.length;
      const ids = new Set(present.map((r) => r.info!.participantId));
      present = (await this.deps.store.list(tenant, room)).filter((r) => r.info && r.removedAtMs === 0 && !ids.has(r.info.participantId));
    }
    this.deps.log.info({ room: `${tenant}/${room}`, removed }, 'room API: room ended');
    return removed;
  }

  /** Starts recording the room, as an agent's request does (the tenant's options; refused once an end user of the call asked for erasure). */
  async startRecording(tenant: string, room: string): Promise<RecordingStatus> {
    await this.present(tenant, room);
    await refuseRecordingIfErased(this.deps.erasedIn, tenant, room);
    return startRoomRecording(this.deps.recorders, tenant, room, '', this.deps.recordingOptions(tenant));
  }

  /** Stops the room's recording; answers once the recorder has finished the file. */
  async stopRecording(tenant: string, room: string): Promise<RecordingStatus> {
    await this.present(tenant, room);
    return controlRoomRecording(this.deps.recorders, tenant, room, '', 'stopRecording');
  }

  /** Sends an ephemeral message to everyone in the room (not stored, not part of the chat). */
  async sendData(tenant: string, room: string, message: DataMessageInput): Promise<{ sentAtMs: number; participants: number }> {
    const present = await this.present(tenant, room);
    const sentAtMs = Date.now();
    this.deps.hub.publish(tenant, room, { $case: 'dataMessage', value: { topic: message.topic ?? '', payload: message.payload, sentAtMs, participantId: '', destinationParticipantIds: [] } });
    return { sentAtMs, participants: present.length };
  }

  /** The room's participants; NOT_FOUND when it has none (a room exists while someone is in it). */
  private async present(tenant: string, room: string): Promise<ParticipantRecord[]> {
    // A record marked removed is on its way out: not listed.
    const records = (await this.deps.store.list(tenant, room)).filter((r) => r.info && r.removedAtMs === 0);
    if (records.length === 0) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such room');
    return records;
  }

  private async participant(tenant: string, room: string, participantId: string): Promise<ParticipantRecord> {
    const stored = await this.deps.store.get(tenant, room, participantId);
    // A stale record's replica is gone (the sweep removes it): it is not listed, nor found.
    if (!stored?.record.info || stored.record.removedAtMs > 0 || (await this.deps.store.isStale(stored.record))) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such participant in the room');
    return stored.record;
  }
}

/** A removal that found the participant already gone (it left meanwhile, or another removal got there first). */
function isGone(error: unknown): boolean {
  return error instanceof GatewayError && (error.code === ErrorCode.NOT_FOUND || error.code === ErrorCode.REMOVED);
}

function trackView(track: TrackInfo): TrackView {
  return { trackId: track.producerId, source: track.source, kind: track.kind, muted: track.paused };
}

function participantView(record: ParticipantRecord): ParticipantView {
  const info = record.info!;
  return {
    participantId: info.participantId,
    identity: info.identity,
    role: info.role,
    name: info.name,
    metadata: info.metadata,
    joinedAtMs: info.joinedAtMs,
    connected: record.connected,
    tracks: info.tracks.map(trackView),
  };
}
