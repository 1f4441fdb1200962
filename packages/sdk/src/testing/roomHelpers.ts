import WebSocket from 'ws';
import { FakeHandler } from 'mediasoup-client';
import * as fakeParameters from 'mediasoup-client/fakeParameters';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import type { Room } from '../Room.js';
import type { MutableParticipant } from '../Roster.js';
import type { WebSocketConstructor } from '../signaling/Socket.js';
import type { ConnectOptions, Participant, TrackEvent } from '../types.js';
import type { FakeSignaling } from './FakeSignaling.js';

/** Options to connect to a fake server: fake media, and reconnection quick enough for tests. */
export function connectOptions(server: FakeSignaling, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return nodeConnectOptions(server.url, 'jwt', extra);
}

/** Options to connect from Node to any signaling server (a real one in test/): `ws`, mediasoup-client's FakeHandler, quick reconnection. */
export function nodeConnectOptions(url: string, token: string, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return {
    url,
    token,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    handlerFactory: FakeHandler.createFactory(fakeParameters),
    reconnectInitialDelayMs: 10,
    reconnectMaxDelayMs: 50,
    ...extra,
  };
}

export async function until(check: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Records the room's chat events as short strings. */
export function recordChat(room: Room): string[] {
  const out: string[] = [];
  room.on('message', (m) => out.push(`message:${m.messageId}:${m.isLocal ? 'local' : m.participantId}:${m.text}`));
  room.on('messageRedacted', (m, by) => out.push(`redacted:${m.messageId}:${by?.id ?? '?'}`));
  return out;
}

/** Records the room's events as short strings. */
export function record(room: Room): string[] {
  const out: string[] = [];
  const t = (name: string) => (e: TrackEvent) => out.push(`${name}:${e.participant.id}:${e.source}`);
  room.on('participantJoined', (p: Participant) => out.push(`joined:${p.id}`));
  room.on('participantLeft', (p: Participant) => out.push(`left:${p.id}`));
  room.on('track', t('track'));
  room.on('trackEnded', t('trackEnded'));
  room.on('localTrackPublished', (e) => out.push(`published:${e.source}`));
  room.on('localTrackUnpublished', (e) => out.push(`unpublished:${e.source}`));
  room.on('reconnecting', () => out.push('reconnecting'));
  room.on('reconnected', (i) => out.push(`reconnected:${i.resumed ? 'resumed' : 'rejoined'}`));
  room.on('disconnected', (i) => out.push(`disconnected:${i.reason}`));
  return out;
}

export const cameraTrack = () => new FakeMediaStreamTrack({ kind: 'video', settings: { width: 1280, height: 720 } }) as unknown as MediaStreamTrack;
export const micTrack = () => new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack;

/** A remote agent as the roster holds one (PA_a, agent-1), with nothing published; fields may be changed. */
export function remoteAgent(overrides: Partial<MutableParticipant> = {}): MutableParticipant {
  return {
    id: 'PA_a',
    identity: 'agent-1',
    role: 'agent',
    visibleTo: '',
    name: '',
    metadata: '',
    joinedAtMs: 1,
    isLocal: false,
    tracks: new Map(),
    publications: new Map(),
    connectionQuality: 'unknown',
    ...overrides,
  };
}
