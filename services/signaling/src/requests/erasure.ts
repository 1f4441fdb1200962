import { ErrorCode, GatewayError } from '@gateway/common';

/** External ids of the end users erased during the room's session (RoomSessions.erasedIn). */
export type ErasedIn = (tenant: string, room: string) => Promise<Set<string>>;

export const erasedRefusal = (what: string) => new GatewayError(ErrorCode.PERMISSION_DENIED, `${what}: an end user of this call asked for erasure`);

/**
 * An end user erased during the session (a data-subject request) keeps their call, but no new
 * data of theirs is taken in it: no Smart Action asks them, they register no device key.
 */
export async function refuseIfErased(erasedIn: ErasedIn, tenant: string, room: string, identity: string, what: string): Promise<void> {
  if ((await erasedIn(tenant, room)).has(identity)) throw erasedRefusal(what);
}
