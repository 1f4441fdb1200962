/**
 * Fakes for the unit tests of signaling: a participant store in memory, an SFU client that
 * answers from a table, and sessions built on them. Imported by tests only.
 */
import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { SfuService, type SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { CloseCode, Notification } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, createLogger } from '@gateway/common';
import type { JoinGrant } from '../auth/tokens.js';
import { ParticipantSession, type ParticipantPersistence, type SessionLink } from '../participant/ParticipantSession.js';

export const silentLog = createLogger('signaling-test', 'silent');

/** The participant store's get/put/delete/list over a Map, with KV's revision rule for put. */
export class MemoryParticipantStore {
  readonly records = new Map<string, { record: ParticipantRecord; revision: number }>();
  private sequence = 0;
  puts = 0;

  private key(tenant: string, room: string, participantId: string) {
    return `${tenant}.${room}.${participantId}`;
  }

  async get(tenant: string, room: string, participantId: string) {
    const stored = this.records.get(this.key(tenant, room, participantId));
    return stored ? structuredClone(stored) : undefined;
  }

  async put(tenant: string, room: string, record: ParticipantRecord, revision?: number): Promise<number> {
    const key = this.key(tenant, room, record.info!.participantId);
    const current = this.records.get(key);
    if (revision !== undefined && current?.revision !== revision) throw new Error('wrong last sequence');
    this.puts++;
    const next = ++this.sequence;
    this.records.set(key, { record: structuredClone(record), revision: next });
    return next;
  }

  async delete(tenant: string, room: string, participantId: string): Promise<void> {
    this.records.delete(this.key(tenant, room, participantId));
  }

  async list(tenant: string, room: string): Promise<ParticipantRecord[]> {
    return [...this.records.entries()].filter(([key]) => key.startsWith(`${tenant}.${room}.`)).map(([, v]) => v.record);
  }
}

/** A socket that remembers what it was told. */
export class RecordingLink implements SessionLink {
  readonly notifications: Array<Notification['event']> = [];
  closed: { code: CloseCode; reason: string } | undefined;
  notify(event: Notification['event']): void {
    this.notifications.push(event);
  }
  close(code: CloseCode, reason: string): void {
    this.closed ??= { code, reason };
  }
}

type Answer = unknown | ((request: any) => unknown);

/**
 * An SfuClient whose methods answer from `answers` (a value, a function of the request, or a
 * GatewayError to fail with) and record every call. A method without an answer fails with
 * UNAVAILABLE, as an unreachable node would.
 */
export function fakeSfu(answers: Record<string, Answer> = {}): { client: SfuClient; calls: Array<{ method: string; request: any }> } {
  const calls: Array<{ method: string; request: any }> = [];
  const client: Record<string, unknown> = {};
  for (const [method, definition] of Object.entries(SfuService)) {
    const unary = (request: unknown, _metadata: unknown, _options: unknown, callback: (error: unknown, response?: unknown) => void) => {
      calls.push({ method, request });
      try {
        const answer = answers[method];
        const response = typeof answer === 'function' ? (answer as (r: unknown) => unknown)(request) : answer;
        if (!(method in answers)) callback(new GatewayError(ErrorCode.UNAVAILABLE, `no fake answer for ${method}`));
        else if (response instanceof GatewayError) callback(response);
        else callback(null, response ?? {});
      } catch (error) {
        callback(error);
      }
      return {};
    };
    // callUnary names its span after the method's path, as grpc-js clients carry it.
    client[method] = Object.assign(unary, { path: definition.path });
  }
  return { client: client as unknown as SfuClient, calls };
}

export function grantOf(over: Partial<JoinGrant> = {}): JoinGrant {
  return {
    tenant: 'demo',
    room: 'room-1',
    identity: 'user-1',
    role: 'agent',
    preflight: false,
    grants: { canPublish: true, canSubscribe: true, sources: ['camera', 'microphone', 'screen'], canRecord: true, canUpdateMetadata: false },
    name: '',
    metadata: '',
    expiresAt: Math.floor(Date.now() / 1000) + 600,
    contact: {},
    tokenId: 'TK_1',
    visibleTo: '',
    ...over,
  };
}

/** A session on node `N1` over a memory store; `lost` records sessions the store took away. */
export function sessionFor(options: { grant?: Partial<JoinGrant>; sfu?: SfuClient; store?: MemoryParticipantStore; participantId?: string; replicaId?: string } = {}) {
  const store = options.store ?? new MemoryParticipantStore();
  const lost: ParticipantSession[] = [];
  const persistence: ParticipantPersistence = { replicaId: options.replicaId ?? 'replica-a', store, lost: (s) => lost.push(s) };
  const sfu = options.sfu ?? fakeSfu().client;
  const { session, resumeToken } = ParticipantSession.create(persistence, silentLog, options.participantId ?? 'PA_1', grantOf(options.grant), 'N1', sfu);
  return { session, resumeToken, store, lost, persistence };
}
