import { describe, expect, it } from 'vitest';
import { Counter, Histogram, Registry } from 'prom-client';
import { SessionTakeover } from '@gateway/proto/gateway/events/v1/events';
import { ConfiguredTenants, ErrorCode, PROTOCOL_VERSION } from '@gateway/common';
import type { SignalingConfig } from '../config.js';
import { MemoryParticipantStore, RecordingLink, fakeSfu, sessionFor, silentLog } from '../testing/fakes.js';
import { JoinService, type JoinServiceDeps } from './JoinService.js';
import { SessionRegistry } from './SessionRegistry.js';
import { TurnCredentials } from './turnCredentials.js';

const config = {
  replicaId: 'replica-a',
  resumeWindowMs: 60_000,
  limits: { sessionsPerToken: 1, maxSessionMs: 3_600_000, participantsPerRoom: 10, roomsPerTenant: 10 },
  chat: { historyLimit: 50 },
} as unknown as SignalingConfig;

/** A session another replica holds (its record says so), dropped a moment ago. */
async function heldElsewhere(store: MemoryParticipantStore, over: { disconnectedAtMs?: number } = {}) {
  const { session, resumeToken } = sessionFor({ store, replicaId: 'replica-b' });
  session.transports.add('TR_1');
  await session.save();
  const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
  await store.put('demo', 'room-1', { ...stored.record, connected: false, disconnectedAtMs: over.disconnectedAtMs ?? Date.now() - 1_000 }, stored.revision);
  return resumeToken;
}

function setUp(options: { nodeAlive?: boolean; roomCreated?: boolean; turn?: SignalingConfig['turn'] } = {}) {
  const store = new MemoryParticipantStore();
  const published: Array<{ subject: string; data: Uint8Array }> = [];
  const sfu = fakeSfu({ openRoom: { rtpCapabilities: { codecs: [] }, created: options.roomCreated ?? false, activeSpeakerParticipantId: '' }, closeParticipant: {} });
  const sessions = new SessionRegistry({
    replicaId: 'replica-a',
    resumeWindowMs: 60_000,
    store,
    hub: { add: () => undefined, remove: () => undefined, publish: () => undefined },
    releaseTokenSlot: async () => undefined,
    revokeToken: async () => undefined,
    participantGone: () => undefined,
    log: silentLog,
  });
  const registry = new Registry();
  const resumes = new Counter({ name: 'resumes_total', help: 'h', labelNames: ['result'] as const, registers: [registry] });
  const deps = {
    config,
    tenants: ConfiguredTenants.of([]),
    turn: TurnCredentials.start(options.turn, silentLog),
    nc: { publish: (subject: string, data: Uint8Array) => void published.push({ subject, data }) },
    store,
    directory: {
      node: async (nodeId: string) => (options.nodeAlive === false ? undefined : { nodeId, grpcAddress: `${nodeId}:1` }),
      clientForNode: () => sfu.client,
    },
    recorders: { recordingOf: async () => undefined },
    hub: { publish: () => undefined, watch: () => undefined, remove: () => undefined },
    roomSessions: { join: async () => undefined, erasedIn: async () => new Set<string>() },
    tokenSessions: { claim: async () => undefined, release: async () => undefined, assertRoomOpen: async () => undefined },
    chat: { history: async () => [] },
    actions: { list: async () => [] },
    sessions,
    metrics: { joinSeconds: new Histogram({ name: 'join_seconds', help: 'h', registers: [registry] }), resumes },
    log: silentLog,
  } as unknown as JoinServiceDeps;
  const resumeCount = async (result: string) => (await resumes.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  return { joins: new JoinService(deps), store, sessions, published, resumeCount };
}

describe('JoinService.resume', () => {
  it("takes a session over from another replica's record and tells that replica", async () => {
    const { joins, store, sessions, published, resumeCount } = setUp();
    const resumeToken = await heldElsewhere(store);
    const link = new RecordingLink();
    const { session, response } = await joins.resume(link, resumeToken, 1);
    expect(sessions.get('PA_1')).toBe(session);
    expect(session.connected).toBe(true);
    expect(session.clientProtocolVersion).toBe(1);
    expect(response).toMatchObject({ protocolVersion: PROTOCOL_VERSION, transportIds: ['TR_1'], resumeToken, participants: [] });
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!.record;
    expect(stored).toMatchObject({ owner: 'replica-a', connected: true });
    expect(published).toHaveLength(1);
    expect(SessionTakeover.decode(published[0]!.data)).toEqual({ participantId: 'PA_1', newOwner: 'replica-a' });
    expect(await resumeCount('resumed')).toBe(1);
  });

  it('hands out fresh TURN credentials with a resume, and none without TURN', async () => {
    const turn = { secret: 'a-turn-secret-of-at-least-32-characters', urls: ['turn:127.0.0.1:3478?transport=udp'], ttlSeconds: 600 };
    const withTurn = setUp({ turn });
    const before = Math.floor(Date.now() / 1000);
    const { response } = await withTurn.joins.resume(new RecordingLink(), await heldElsewhere(withTurn.store), 1);
    expect(response.iceServers).toHaveLength(1);
    const [expiry, id] = response.iceServers[0]!.username.split(':');
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + 600);
    expect(Number(expiry)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 600);
    // The participant id, not the identity from the join token.
    expect(id).toBe('PA_1');
    expect(response.iceServers[0]).toMatchObject({ urls: turn.urls });

    const without = setUp();
    expect((await without.joins.resume(new RecordingLink(), await heldElsewhere(without.store), 1)).response.iceServers).toEqual([]);
  });

  it('refuses a malformed token, and a wrong secret for a real record', async () => {
    const { joins, store } = setUp();
    const resumeToken = await heldElsewhere(store);
    await expect(joins.resume(new RecordingLink(), 'not-a-token', 1)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    const forged = `${resumeToken.split('.').slice(0, 3).join('.')}.forgedsecret`;
    await expect(joins.resume(new RecordingLink(), forged, 1)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('says the session expired past the resume window, when its node is gone, or when its room is new', async () => {
    const late = setUp();
    const lateToken = await heldElsewhere(late.store, { disconnectedAtMs: Date.now() - 120_000 });
    await expect(late.joins.resume(new RecordingLink(), lateToken, 1)).rejects.toMatchObject({ code: ErrorCode.SESSION_EXPIRED });
    expect(await late.resumeCount('expired')).toBe(1);

    const orphan = setUp({ nodeAlive: false });
    await expect(orphan.joins.resume(new RecordingLink(), await heldElsewhere(orphan.store), 1)).rejects.toMatchObject({ code: ErrorCode.SESSION_EXPIRED });

    const restarted = setUp({ roomCreated: true });
    await expect(restarted.joins.resume(new RecordingLink(), await heldElsewhere(restarted.store), 1)).rejects.toMatchObject({ code: ErrorCode.SESSION_EXPIRED });
    expect(await restarted.store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
    expect(restarted.sessions.holds('PA_1')).toBe(false);
  });

  it('refuses to resume a session whose record is marked removed, with REMOVED', async () => {
    const { joins, store, resumeCount } = setUp();
    const resumeToken = await heldElsewhere(store);
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', { ...stored.record, removedAtMs: Date.now() }, stored.revision);
    await expect(joins.resume(new RecordingLink(), resumeToken, 1)).rejects.toMatchObject({ code: ErrorCode.REMOVED });
    expect(await resumeCount('expired')).toBe(1);
  });

  it('ends removed when the removal marks the record while a takeover is under way', async () => {
    const { joins, store, sessions } = setUp();
    const resumeToken = await heldElsewhere(store);
    // The remover (the old owner) marks the record right after this replica claimed it.
    const put = store.put.bind(store);
    let marked = false;
    store.put = async (tenant, room, record, revision) => {
      const written = await put(tenant, room, record, revision);
      if (!marked && record.owner === 'replica-a') {
        marked = true;
        return put(tenant, room, { ...record, removedAtMs: Date.now() }, written).then(() => written);
      }
      return written;
    };
    const link = new RecordingLink();
    await expect(joins.resume(link, resumeToken, 1)).rejects.toMatchObject({ code: ErrorCode.REMOVED });
    expect(link.closed?.code).toBe(4005);
    expect(sessions.holds('PA_1')).toBe(false);
    expect((await store.get('demo', 'room-1', 'PA_1'))!.record.removedAtMs).toBeGreaterThan(0);
  });

  it("refuses a token of another participant's session held here", async () => {
    const { joins, store } = setUp();
    const first = await joins.resume(new RecordingLink(), await heldElsewhere(store), 1);
    const [tenant, room] = ['demo', 'other-room'];
    const mismatched = `${tenant}.${room}.${first.session.participantId}.whatever`;
    await expect(joins.resume(new RecordingLink(), mismatched, 1)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });
});
