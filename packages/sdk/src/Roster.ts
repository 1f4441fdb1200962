import type { ParticipantInfo, TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Emit } from './events.js';
import type { ConnectionQuality, Participant, RemoteSource, RoomEvents, TrackPublication } from './types.js';

/** A participant whose track and publication maps the SDK fills in (the app sees them read-only). */
export interface MutableParticipant extends Participant {
  tracks: Map<RemoteSource, MediaStreamTrack>;
  publications: Map<RemoteSource, TrackPublication>;
  name: string;
  metadata: string;
  connectionQuality: ConnectionQuality;
}

/** What the roster needs of whoever receives the other participants' tracks. */
export interface RemoteTrackSink {
  /** A track someone publishes (or its paused state, when already known). */
  add(participantId: string, track: TrackInfo): void;
  /** Forgets a participant's tracks, all of them or all but those in `keep`. */
  dropTracksOf(participantId: string, keep?: ReadonlySet<string>): void;
}

export interface RosterContext {
  tracks: RemoteTrackSink;
  emit: Emit<Pick<RoomEvents, 'participantJoined' | 'participantLeft' | 'participantUpdated' | 'connectionQualityChanged'>>;
}

/**
 * Who is in the room: the local participant, across rejoins (which change its id), and
 * everyone else, announcing each arrival and departure once.
 */
export class Roster {
  /** Everyone else, by participant id. */
  readonly others = new Map<string, MutableParticipant>();
  /** Set by the first join; replaced by a rejoin. */
  local!: MutableParticipant;
  /** Our participant ids from sessions replaced by a rejoin: never treat them as someone else. */
  private readonly formerLocalIds = new Set<string>();

  constructor(private readonly context: RosterContext) {}

  /** Takes the local participant from a join, resume or rejoin; `tracks` and `publications` are what it publishes. */
  setLocal(info: ParticipantInfo, tracks: Map<RemoteSource, MediaStreamTrack>, publications: Map<RemoteSource, TrackPublication>): void {
    const previous = this.local;
    if (previous && previous.id !== info.participantId) this.formerLocalIds.add(previous.id);
    this.local = participantFrom(info, true, tracks, publications);
    // A resume keeps the session and so its quality (the node tells only of changes).
    if (previous?.id === info.participantId) this.local.connectionQuality = previous.connectionQuality;
  }

  /** Whether a participant id is ours, in this session or one a rejoin replaced. */
  isOwn(participantId: string): boolean {
    return participantId === this.local?.id || this.formerLocalIds.has(participantId);
  }

  /** The local participant (this session) or someone in the room. */
  byId(participantId: string): Participant | undefined {
    return participantId === this.local?.id ? this.local : this.others.get(participantId);
  }

  /** The local participant (any session) or someone in the room; undefined for anyone else (gone, or not said). */
  participantOf(participantId: string | undefined): Participant | undefined {
    if (!participantId) return undefined;
    return this.isOwn(participantId) ? this.local : this.others.get(participantId);
  }

  /** A snapshot's participants without our former sessions (the server may list them a while). */
  othersIn(snapshot: ParticipantInfo[]): ParticipantInfo[] {
    return snapshot.filter((p) => !this.formerLocalIds.has(p.participantId));
  }

  /** Makes participants and their tracks match a snapshot, announcing every difference. */
  reconcile(snapshot: ParticipantInfo[]): void {
    const present = new Map(snapshot.map((p) => [p.participantId, p]));
    for (const id of [...this.others.keys()]) if (!present.has(id)) this.remove(id);
    for (const info of snapshot) {
      this.upsert(info);
      this.context.tracks.dropTracksOf(info.participantId, new Set(info.tracks.map((t) => t.producerId)));
    }
  }

  upsert(info: ParticipantInfo): void {
    if (this.formerLocalIds.has(info.participantId)) return;
    const known = this.others.get(info.participantId);
    if (!known) {
      const participant = participantFrom(info, false, new Map(), new Map());
      this.others.set(participant.id, participant);
      this.context.emit('participantJoined', participant);
    } else {
      // Renamed while the connection was away: a snapshot says so too.
      this.update(info);
    }
    for (const track of info.tracks) this.context.tracks.add(info.participantId, track);
  }

  /** Someone's name or metadata changed (the local participant's too): announced when it did. */
  update(info: Pick<ParticipantInfo, 'participantId' | 'name' | 'metadata'>): void {
    const participant = this.isOwn(info.participantId) ? this.local : this.others.get(info.participantId);
    if (!participant || (participant.name === info.name && participant.metadata === info.metadata)) return;
    participant.name = info.name;
    participant.metadata = info.metadata;
    this.context.emit('participantUpdated', participant);
  }

  /** Someone's connection quality (the local participant's too): announced when it changed. */
  setQuality(participantId: string, quality: ConnectionQuality): void {
    const participant = participantId === this.local?.id ? this.local : this.others.get(participantId);
    if (!participant || participant.connectionQuality === quality) return;
    participant.connectionQuality = quality;
    this.context.emit('connectionQualityChanged', participant, quality);
  }

  remove(participantId: string): void {
    const participant = this.others.get(participantId);
    if (!participant) return;
    this.context.tracks.dropTracksOf(participantId);
    this.others.delete(participantId);
    this.context.emit('participantLeft', participant);
  }
}

function participantFrom(info: ParticipantInfo, isLocal: boolean, tracks: Map<RemoteSource, MediaStreamTrack>, publications: Map<RemoteSource, TrackPublication>): MutableParticipant {
  return {
    id: info.participantId,
    identity: info.identity,
    role: info.role,
    visibleTo: (['agents', 'supervisors'] as const).find((v) => v === info.visibleTo) ?? '',
    name: info.name,
    metadata: info.metadata,
    joinedAtMs: info.joinedAtMs,
    isLocal,
    tracks,
    publications,
    connectionQuality: 'unknown',
  };
}
