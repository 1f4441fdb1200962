import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { SmartActions } from '../actions/SmartActions.js';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import type { RoomHub } from '../rooms/RoomHub.js';
import { refuseIfErased, type ErasedIn } from './erasure.js';
import type { Handlers } from './types.js';

export interface SmartActionContext {
  actions: Pick<SmartActions, 'request' | 'answer' | 'attachmentUrl'>;
  hub: Pick<RoomHub, 'publish'>;
  /** The room's participant records, every replica's: the end users an agent may ask. */
  participants(tenant: string, room: string): Promise<ParticipantRecord[]>;
  erasedIn: ErasedIn;
}

export type SmartActionCase = 'requestSmartAction' | 'answerSmartAction' | 'artifactUrl';

/** Smart Actions: agents ask an end user for a photo, a screenshot or a verification. */
export function smartActionHandlers(ctx: SmartActionContext): Handlers<SmartActionCase> {
  /** Tells the room a Smart Action was asked for or changed. */
  const announce = (session: ParticipantSession, action: SmartAction) => ctx.hub.publish(session.tenant, session.room, { $case: 'smartAction', value: action });

  return {
    /** An agent asks an end user of the room (the only one when none is named). */
    async requestSmartAction(session, { kind, participantId }) {
      if (session.info.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents may request Smart Actions');
      const endUsers = (await ctx.participants(session.tenant, session.room)).map((r) => r.info!).filter((i) => i?.role === 'end_user');
      const target = participantId ? endUsers.find((i) => i.participantId === participantId) : endUsers.length === 1 ? endUsers[0] : undefined;
      if (!target)
        throw new GatewayError(
          participantId ? ErrorCode.NOT_FOUND : ErrorCode.BAD_REQUEST,
          participantId ? 'no such end user in this room' : 'name the end user (participantId): the room has none or several',
        );
      await refuseIfErased(ctx.erasedIn, session.tenant, session.room, target.identity, 'nothing is asked of this end user');
      const action = await ctx.actions.request(session.actor(), kind, { participantId: target.participantId, identity: target.identity });
      announce(session, action);
      return action;
    },

    /** The end user declines, or answers a verification (uploads arrive over HTTP: http/uploads.ts). */
    async answerSmartAction(session, { actionId, decline, webauthnResponse }) {
      const action = await ctx.actions.answer(session.actor(), actionId, { decline, webauthnResponse });
      announce(session, action);
      return action;
    },

    /** Agents: a short-lived URL of an attachment of their tenant. */
    artifactUrl: (session, { artifactId }) => ctx.actions.attachmentUrl(session.actor(), artifactId),
  };
}
