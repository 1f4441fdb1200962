import { ApiClient, type ApiClientOptions, pathOf } from './api.js';

export interface TrackInfo {
  trackId: string;
  source: string;
  kind: 'audio' | 'video';
  muted: boolean;
}

export interface ParticipantInfo {
  participantId: string;
  identity: string;
  role: 'agent' | 'end_user';
  name: string;
  metadata: string;
  joinedAtMs: number;
  connected: boolean;
  tracks: TrackInfo[];
}

/**
 * The room API (docs/http-api.md): the tenant's live rooms, read and steered from its backend.
 * Every call is one request, authenticated with the tenant's key and secret.
 *
 * ```ts
 * const rooms = new RoomClient({ url: 'https://gateway.example.com', credentials: { apiKey, apiSecret } });
 * for (const { room } of await rooms.listRooms()) console.log(room, await rooms.listParticipants(room));
 * ```
 */
export class RoomClient {
  private readonly api: ApiClient;

  /** `url`: signaling's public URL. */
  constructor(options: ApiClientOptions) {
    this.api = new ApiClient(options);
  }

  /** Rooms with participants, by name. */
  async listRooms(): Promise<Array<{ room: string; participants: number }>> {
    return (await this.api.call<{ rooms: Array<{ room: string; participants: number }> }>('GET', '/v1/rooms')).rooms;
  }

  async listParticipants(room: string): Promise<ParticipantInfo[]> {
    return (await this.api.call<{ participants: ParticipantInfo[] }>('GET', pathOf('v1', 'rooms', room, 'participants'))).participants;
  }

  /** Removes them for good: neither their session nor their token brings them back. */
  async removeParticipant(room: string, participantId: string): Promise<void> {
    await this.api.call('DELETE', pathOf('v1', 'rooms', room, 'participants', participantId));
  }

  /** Renames them or sets their metadata; the others are told. */
  async updateParticipant(room: string, participantId: string, changes: { name?: string; metadata?: string }): Promise<ParticipantInfo> {
    return (await this.api.call<{ participant: ParticipantInfo }>('PATCH', pathOf('v1', 'rooms', room, 'participants', participantId), changes)).participant;
  }

  /** Mutes one of their tracks (it stays published; unmuting is theirs to do). */
  async muteTrack(room: string, participantId: string, trackId: string): Promise<TrackInfo> {
    return (await this.api.call<{ track: TrackInfo }>('POST', `${pathOf('v1', 'rooms', room, 'participants', participantId, 'tracks', trackId)}/mute`)).track;
  }

  /** Ends the room: everyone is removed, and joins are refused for 30 s. */
  async endRoom(room: string): Promise<{ removed: number }> {
    const { removed } = await this.api.call<{ removed: number }>('DELETE', pathOf('v1', 'rooms', room));
    return { removed };
  }

  async startRecording(room: string): Promise<{ recordingId: string; state: string }> {
    return this.api.call('POST', `${pathOf('v1', 'rooms', room)}/recording`);
  }

  /** Answers once the recorder has finished the file. */
  async stopRecording(room: string): Promise<{ recordingId: string; state: string }> {
    return this.api.call('DELETE', `${pathOf('v1', 'rooms', room)}/recording`);
  }

  /** An ephemeral message to everyone present (the SDK's `data` event): not stored, not chat. */
  async sendData(room: string, payload: string, options: { topic?: string } = {}): Promise<{ sentAtMs: number; participants: number }> {
    return this.api.call('POST', `${pathOf('v1', 'rooms', room)}/data`, { payload, ...(options.topic ? { topic: options.topic } : {}) });
  }
}
