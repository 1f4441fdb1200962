import type { Readable } from 'node:stream';
import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { ParticipantStore } from '@gateway/cluster';
import type { Actor, SmartActions } from '../actions/SmartActions.js';
import { parseResumeToken, resumeSecretMatches } from '../participant/resumeToken.js';
import type { RoomHub } from '../rooms/RoomHub.js';

/**
 * Who sends an upload: the participant whose session's resume token is the bearer, checked
 * against the participant record (not a session held here), so any replica serves the upload.
 */
export async function authorizeUpload(store: Pick<ParticipantStore, 'get'>, authorization: string | undefined): Promise<Actor> {
  const bearer = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
  const parsed = bearer ? parseResumeToken(bearer) : undefined;
  if (!parsed) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'send the session token as Authorization: Bearer');
  const stored = await store.get(parsed.tenant, parsed.room, parsed.participantId).catch(() => undefined);
  if (!stored || !resumeSecretMatches(stored.record.resumeTokenHash, parsed.secret)) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the session token is not valid');
  const info = stored.record.info!;
  return { tenant: parsed.tenant, room: parsed.room, participantId: info.participantId, identity: info.identity, role: info.role };
}

export interface UploadDeps {
  store: Pick<ParticipantStore, 'get'>;
  actions: Pick<SmartActions, 'upload'>;
  hub: Pick<RoomHub, 'publish'>;
}

/** An end user's upload answering a Smart Action; the room hears of the action's new state. */
export async function uploadForAction(deps: UploadDeps, actionId: string, authorization: string | undefined, body: Readable): Promise<SmartAction> {
  const actor = await authorizeUpload(deps.store, authorization);
  const action = await deps.actions.upload(actor, actionId, body);
  deps.hub.publish(actor.tenant, actor.room, { $case: 'smartAction', value: action });
  return action;
}
