import { Readable } from 'node:stream';
import type { KV } from '@nats-io/kv';
import { SignJWT, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { isLiveEntry, DeviceKeys, ErrorCode, GatewayError, RoomIndex, decodeChecked, kvKeys, listEntries, liveKeys, newId, smartActionSchema, type ArtifactStore } from '@gateway/common';
import type { Tenant } from '../config.js';
import { sanitizeImage } from './images.js';

export const smartActionKinds = ['photo', 'screenshot', 'verification'] as const;

export interface SmartActionLimits {
  /** Largest upload per kind, in bytes. */
  maxUploadBytes: Record<'photo' | 'screenshot', number>;
  /** How long an attachment URL handed to an agent stays valid. */
  urlTtlSeconds: number;
  /** Uploads this replica reads and decodes at once. */
  concurrentUploads?: number;
}

/** An upload lease older than this belongs to an upload that died with its replica. */
const UPLOAD_LEASE_MS = 2 * 60_000;

export interface WebAuthnSettings {
  rpId: string;
  rpName: string;
  /** Origins the end user's page may be served from. */
  origins(): string[];
}

/** Who is asking, as far as Smart Actions care. */
export interface Actor {
  tenant: string;
  room: string;
  participantId: string;
  identity: string;
  role: string;
}

/** How much of an oversized upload is read and dropped before the connection is cut. */
const DRAIN_BYTES = 64 * 1024 * 1024;

const isUpload = (kind: string): kind is 'photo' | 'screenshot' => kind === 'photo' || kind === 'screenshot';

/**
 * Smart Actions of a conversation: an agent asks the end user for a photo, a screenshot or a
 * verification; the end user uploads or proves possession of a registered device key. Actions
 * live in KV so every signaling replica of the room sees the same state.
 */
/** A pending action as read, with the revision its end is saved against. */
interface Pending {
  action: SmartAction;
  revision: number;
}

export class SmartActions {
  constructor(
    private readonly kv: KV,
    /** Challenges of device key registrations in progress (short TTL), so any replica can finish one. */
    private readonly challenges: KV,
    readonly deviceKeys: DeviceKeys,
    private readonly artifacts: ArtifactStore,
    private readonly tenants: () => readonly Tenant[],
    private readonly webauthn: WebAuthnSettings,
    readonly limits: SmartActionLimits,
    /** One upload per action at a time, across replicas (short TTL). */
    private readonly uploadLeases?: KV,
  ) {
    this.index = new RoomIndex(kv);
  }

  /** The actions of each room, so that a join reads its room's keys only. */
  private readonly index: RoomIndex;
  private activeUploads = 0;

  async get(tenant: string, room: string, actionId: string): Promise<SmartAction> {
    const entry = await this.kv.get(kvKeys.smartAction(tenant, room, actionId)).catch(() => null);
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    return readAction(entry.value);
  }

  async list(tenant: string, room: string): Promise<SmartAction[]> {
    // A record that fails its checks is left out (and so cannot be answered), not trusted, and
    // does not stop the room's joins or its transcript.
    return (await this.entriesOf(tenant, room))
      .flatMap((value) => {
        try {
          return [readAction(value)];
        } catch {
          return [];
        }
      })
      .sort((a, b) => Number(a.requestedAtMs - b.requestedAtMs));
  }

  /** The room's action records, read by key as its index names them (through the bucket's subjects when the index is unreadable). */
  private async entriesOf(tenant: string, room: string): Promise<Uint8Array[]> {
    const ids = await this.index.read(tenant, room);
    if (!ids) return (await listEntries(this.kv, kvKeys.smartActionsOfRoom(tenant, room))).map((e) => e.value);
    const named = [...ids.keys()];
    const entries = await Promise.all(named.map((id) => this.kv.get(kvKeys.smartAction(tenant, room, id))));
    const abandoned = this.index.abandoned(
      ids,
      named.filter((_, i) => !isLiveEntry(entries[i])),
    );
    if (abandoned.length > 0) await this.index.remove(tenant, room, abandoned).catch(() => undefined);
    return entries.flatMap((entry) => (isLiveEntry(entry) ? [entry.value] : []));
  }

  /** Saves a new action: named in its room's index first, so that no listing misses it. */
  private async save(tenant: string, room: string, action: SmartAction): Promise<SmartAction> {
    await this.index.add(tenant, room, action.actionId);
    await this.kv.put(kvKeys.smartAction(tenant, room, action.actionId), SmartAction.encode(action).finish());
    return action;
  }

  /**
   * Saves the end of a pending action only if nobody ended it first (two uploads, a decline
   * racing an upload) and the room has not ended and removed it meanwhile.
   */
  private async settle(tenant: string, room: string, pending: Pending, action: SmartAction): Promise<SmartAction> {
    try {
      await this.kv.update(kvKeys.smartAction(tenant, room, action.actionId), SmartAction.encode(action).finish(), pending.revision);
    } catch (error) {
      throw new GatewayError(ErrorCode.INVALID_STATE, 'this Smart Action was answered or ended meanwhile', { cause: error });
    }
    return action;
  }

  /** An agent asks an end user. A verification of someone without a device key fails at once. */
  async request(agent: Actor, kind: string, target: { participantId: string; identity: string }): Promise<SmartAction> {
    if (agent.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents may request Smart Actions');
    if (!(smartActionKinds as readonly string[]).includes(kind)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'kind must be photo, screenshot or verification');
    const action: SmartAction = {
      actionId: newId('SA'),
      kind,
      state: 'requested',
      requestedBy: agent.participantId,
      participantId: target.participantId,
      requestedAtMs: Date.now(),
      completedAtMs: 0,
      artifactId: '',
      contentType: '',
      sizeBytes: 0,
      webauthnOptions: undefined,
      verified: false,
      reason: '',
      externalId: target.identity,
    };
    if (kind === 'verification') {
      const keys = await this.deviceKeys.list(agent.tenant, target.identity);
      if (keys.length === 0) {
        return this.save(agent.tenant, agent.room, { ...action, state: 'failed', completedAtMs: Date.now(), reason: 'no device key is registered for this end user' });
      }
      const options = await generateAuthenticationOptions({
        rpID: this.webauthn.rpId,
        allowCredentials: keys.map((k) => ({ id: k.id, transports: k.transports as never })),
        userVerification: 'preferred',
      });
      action.webauthnOptions = options as unknown as Record<string, unknown>;
    }
    return this.save(agent.tenant, agent.room, action);
  }

  /** The end user asked declines, or answers a verification. */
  async answer(user: Actor, actionId: string, answer: { decline: boolean; webauthnResponse?: Record<string, unknown> }): Promise<SmartAction> {
    const pending = await this.pendingFor(user, actionId);
    const { action } = pending;
    if (answer.decline) return this.settle(user.tenant, user.room, pending, { ...action, state: 'declined', completedAtMs: Date.now(), reason: 'the end user declined' });
    if (action.kind !== 'verification') throw new GatewayError(ErrorCode.BAD_REQUEST, `a ${action.kind} is answered by uploading it`);
    if (!answer.webauthnResponse) throw new GatewayError(ErrorCode.BAD_REQUEST, 'webauthnResponse is required');
    const response = answer.webauthnResponse as unknown as AuthenticationResponseJSON;
    // Only a key registered before the agent asked proves anything: one registered from this
    // very session while the request is open would prove only that the session is in hand.
    const key = (await this.deviceKeys.list(user.tenant, user.identity)).find((k) => k.id === response.id);
    const done = (verified: boolean, reason: string) => this.settle(user.tenant, user.room, pending, { ...action, state: 'completed', completedAtMs: Date.now(), verified, reason });
    if (!key) return done(false, 'the key used is not registered for this end user');
    if (key.registeredAtMs >= Number(action.requestedAtMs)) return done(false, 'the key used was registered after the request');
    try {
      const result = await verifyAuthenticationResponse({
        response,
        expectedChallenge: String(action.webauthnOptions?.challenge ?? ''),
        expectedOrigin: this.webauthn.origins(),
        expectedRPID: this.webauthn.rpId,
        credential: { id: key.id, publicKey: Buffer.from(key.publicKey, 'base64'), counter: key.counter, transports: key.transports as never },
        requireUserVerification: false,
      });
      if (!result.verified) return done(false, 'the device key did not verify');
      await this.deviceKeys.updateCounter(user.tenant, user.identity, key.id, result.authenticationInfo.newCounter);
      return done(true, '');
    } catch {
      // A wrong signature, challenge or origin: the answer is "not verified", not a server error.
      return done(false, 'the device key did not verify');
    }
  }

  /** The end user's photo or screenshot: checked by content, stripped of metadata, encrypted. */
  async upload(user: Actor, actionId: string, body: Readable): Promise<SmartAction> {
    const pending = await this.pendingFor(user, actionId);
    const { action } = pending;
    if (!isUpload(action.kind)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a verification is not answered by an upload');
    // Each upload buffers up to the size limit and decodes an image: their number is bounded
    // per replica, and one action takes one upload at a time wherever it arrives.
    if (this.activeUploads >= (this.limits.concurrentUploads ?? Infinity)) {
      throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, 'too many uploads in progress; try again shortly', { details: { retryAfterMs: 1_000 } });
    }
    this.activeUploads++;
    let lease: { key: string; revision: number } | undefined;
    try {
      lease = await this.takeUploadLease(user, actionId);
      return await this.receive(user, pending, body);
    } finally {
      this.activeUploads--;
      if (lease && this.uploadLeases) await this.uploadLeases.delete(lease.key, { previousSeq: lease.revision }).catch(() => undefined);
    }
  }

  private async takeUploadLease(user: Actor, actionId: string): Promise<{ key: string; revision: number } | undefined> {
    if (!this.uploadLeases) return undefined;
    const key = kvKeys.smartAction(user.tenant, user.room, actionId);
    const value = JSON.stringify({ startedAtMs: Date.now() });
    try {
      return { key, revision: await this.uploadLeases.create(key, value) };
    } catch {
      const entry = await this.uploadLeases.get(key);
      const startedAtMs = isLiveEntry(entry) ? leaseStart(entry.string()) : 0;
      if (entry && Number.isFinite(startedAtMs) && Date.now() - startedAtMs < UPLOAD_LEASE_MS && entry.operation === 'PUT') {
        throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, 'an upload for this Smart Action is already in progress');
      }
      try {
        return { key, revision: await this.uploadLeases.update(key, value, entry?.revision ?? 0) };
      } catch (error) {
        throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, 'an upload for this Smart Action is already in progress', { cause: error });
      }
    }
  }

  private async receive(user: Actor, pending: Pending, body: Readable): Promise<SmartAction> {
    const { action } = pending;
    if (!isUpload(action.kind)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a verification is not answered by an upload');
    const limit = this.limits.maxUploadBytes[action.kind];
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      // Over the limit the rest is read and dropped (up to a bound), so the client gets the
      // answer instead of a connection cut while it is still sending.
      if (size > limit + DRAIN_BYTES) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, `a ${action.kind} is limited to ${limit} bytes`);
      if (size <= limit) chunks.push(chunk as Buffer);
    }
    if (size > limit) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, `a ${action.kind} is limited to ${limit} bytes`);
    const image = await sanitizeImage(Buffer.concat(chunks));
    const artifactId = newId('AT');
    const stored = await this.artifacts.put(user.tenant, artifactId, Readable.from([image.data]), image.contentType);
    try {
      return await this.settle(user.tenant, user.room, pending, { ...action, state: 'completed', completedAtMs: Date.now(), artifactId, contentType: image.contentType, sizeBytes: stored.size });
    } catch (error) {
      // Nobody will announce or deliver this copy: it goes at once.
      await this.artifacts.delete(user.tenant, artifactId);
      throw error;
    }
  }

  private async pendingFor(user: Actor, actionId: string): Promise<Pending> {
    const entry = await this.kv.get(kvKeys.smartAction(user.tenant, user.room, actionId)).catch(() => null);
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    const action = readAction(entry.value);
    // The same end user after a rejoin has a new participant id but the same identity.
    const asked = action.participantId === user.participantId || (user.role === 'end_user' && action.externalId !== '' && action.externalId === user.identity);
    if (!asked) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this Smart Action asks someone else');
    if (action.state !== 'requested') throw new GatewayError(ErrorCode.INVALID_STATE, `this Smart Action is already ${action.state}`);
    return { action, revision: entry.revision };
  }

  /** Options for registering the end user's device key; the challenge goes back with the answer. */
  async registrationOptions(user: Actor): Promise<Record<string, unknown>> {
    if (user.role !== 'end_user') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only end users register device keys');
    const existing = await this.deviceKeys.list(user.tenant, user.identity);
    const options = await generateRegistrationOptions({
      rpName: this.webauthn.rpName,
      rpID: this.webauthn.rpId,
      userName: 'end user',
      userID: DeviceKeys.userHandle(user.tenant, user.identity) as Uint8Array<ArrayBuffer>,
      attestationType: 'none',
      excludeCredentials: existing.map((k) => ({ id: k.id, transports: k.transports as never })),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    });
    await this.challenges.put(kvKeys.participant(user.tenant, user.room, user.participantId), options.challenge);
    return options as unknown as Record<string, unknown>;
  }

  async register(user: Actor, response: Record<string, unknown>): Promise<string> {
    const key = kvKeys.participant(user.tenant, user.room, user.participantId);
    const entry = await this.challenges.get(key);
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'ask for deviceKeyOptions first, then send the response');
    const expectedChallenge = entry.string();
    // A challenge answers once.
    await this.challenges.purge(key);
    let result: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
    try {
      result = await verifyRegistrationResponse({
        response: response as unknown as RegistrationResponseJSON,
        expectedChallenge,
        expectedOrigin: this.webauthn.origins(),
        expectedRPID: this.webauthn.rpId,
        requireUserVerification: false,
      });
    } catch (error) {
      throw new GatewayError(ErrorCode.BAD_REQUEST, 'the device key registration did not verify', { cause: error });
    }
    if (!result.verified || !result.registrationInfo) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the device key registration did not verify');
    const { credential } = result.registrationInfo;
    await this.deviceKeys.add(user.tenant, user.identity, {
      id: credential.id,
      publicKey: Buffer.from(credential.publicKey).toString('base64'),
      counter: credential.counter,
      transports: credential.transports ?? [],
      registeredAtMs: Date.now(),
    });
    return credential.id;
  }

  /** A URL through which an agent of the tenant views an attachment for a few minutes. */
  async attachmentUrl(agent: Actor, artifactId: string): Promise<{ url: string; expiresAtMs: number }> {
    if (agent.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents view attachments');
    const actions = await this.list(agent.tenant, agent.room);
    if (!actions.some((a) => a.artifactId === artifactId && artifactId !== '')) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such attachment in this room');
    const expiresAtMs = Date.now() + this.limits.urlTtlSeconds * 1000;
    const token = await new SignJWT({ tnt: agent.tenant, art: artifactId })
      .setProtectedHeader({ alg: 'HS256', typ: 'gateway-artifact' })
      .setExpirationTime(Math.floor(expiresAtMs / 1000))
      .sign(this.secretOf(agent.tenant));
    return { url: `/v1/artifacts/${artifactId}?token=${token}`, expiresAtMs };
  }

  /** The bytes behind an attachment URL: only for the tenant that signed it, only before it expires. */
  async download(artifactId: string, token: string): Promise<{ data: Buffer; contentType: string }> {
    let tenant: string;
    try {
      tenant = String(decodeJwt(token).tnt ?? '');
    } catch (error) {
      throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the URL is not valid', { cause: error });
    }
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, this.secretOf(tenant), { algorithms: ['HS256'], typ: 'gateway-artifact' }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new GatewayError(ErrorCode.TOKEN_EXPIRED, 'the URL has expired; ask for a new one', { cause: error });
      throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the URL is not valid', { cause: error });
    }
    if (claims.art !== artifactId || claims.tnt !== tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the URL is not valid');
    return this.artifacts.get(tenant, artifactId);
  }

  /**
   * A data-subject erasure: the Smart Actions that asked the end user go, with their uploads
   * (crypto-shredded), and so do device key registrations they had in progress in the room.
   */
  async eraseOf(tenant: string, room: string, externalId: string, participantIds: string[]): Promise<{ actions: number; attachments: number }> {
    const theirs = (await this.list(tenant, room)).filter((a) => a.externalId === externalId || participantIds.includes(a.participantId));
    let attachments = 0;
    for (const action of theirs) {
      if (action.artifactId) {
        await this.artifacts.delete(tenant, action.artifactId);
        attachments++;
      }
      await this.kv.purge(kvKeys.smartAction(tenant, room, action.actionId));
    }
    await this.index.remove(
      tenant,
      room,
      theirs.map((a) => a.actionId),
    );
    for (const participantId of participantIds) await this.challenges.purge(kvKeys.participant(tenant, room, participantId));
    return { actions: theirs.length, attachments };
  }

  /** The room ended and its attachments were announced: the action records go. */
  async removeAll(tenant: string, room: string, actions: SmartAction[]): Promise<void> {
    for (const action of actions) await this.kv.purge(kvKeys.smartAction(tenant, room, action.actionId));
    await this.index.remove(
      tenant,
      room,
      actions.map((a) => a.actionId),
    );
    // Device key registrations begun in the room and never answered end with it.
    for (const key of await liveKeys(this.challenges, kvKeys.participantsOfRoom(tenant, room))) await this.challenges.purge(key);
  }

  private secretOf(tenant: string): Uint8Array {
    const found = this.tenants().find((t) => t.name === tenant);
    if (!found) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the URL is not valid');
    return new TextEncoder().encode(found.apiSecret);
  }
}

/** When a lease record says its upload started; 0 (stale) when it cannot be read. */
function leaseStart(text: string): number {
  try {
    const value = Number((JSON.parse(text) as { startedAtMs?: unknown }).startedAtMs);
    return Number.isFinite(value) ? value : 0;
  } catch {
    return 0;
  }
}

/** A Smart Action record read back from KV, checked before use. */
function readAction(bytes: Uint8Array): SmartAction {
  return decodeChecked(SmartAction, bytes, smartActionSchema, 'Smart Action record');
}
