import { ErrorCode, GatewayError } from '@gateway/common';
import type { SmartActions } from '../actions/SmartActions.js';
import { refuseIfErased, type ErasedIn } from './erasure.js';
import type { Handlers } from './types.js';

export interface DeviceKeyContext {
  actions: Pick<SmartActions, 'registrationOptions' | 'register'>;
  erasedIn: ErasedIn;
}

export type DeviceKeyCase = 'deviceKeyOptions' | 'registerDeviceKey';

/** End users register their device's key (WebAuthn) for later verifications. */
export function deviceKeyHandlers(ctx: DeviceKeyContext): Handlers<DeviceKeyCase> {
  return {
    async deviceKeyOptions(session) {
      await refuseIfErased(ctx.erasedIn, session.tenant, session.room, session.info.identity, 'no device key is registered');
      return ctx.actions.registrationOptions(session.actor());
    },
    async registerDeviceKey(session, { response }) {
      if (!response) throw new GatewayError(ErrorCode.BAD_REQUEST, 'response is required');
      await refuseIfErased(ctx.erasedIn, session.tenant, session.room, session.info.identity, 'no device key is registered');
      return { credentialId: await ctx.actions.register(session.actor(), response) };
    },
  };
}
