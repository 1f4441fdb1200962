import type { SmartAction as SmartActionInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { SmartAction } from '../types.js';

/**
 * The room's Smart Actions as the client knows them: one entry per actionId whichever way it
 * came (the agent's response, the notification, a join or resume snapshot), ordered by when
 * they were requested. A copy changes the entry only when it brings a new state, and an
 * action never goes back to 'requested' once answered (a late copy of the request, say).
 * No I/O: SmartActions feeds it and emits what it reports.
 */
export class SmartActionLog {
  private readonly list: SmartAction[] = [];
  private readonly byId = new Map<string, SmartAction>();

  get actions(): readonly SmartAction[] {
    return this.list;
  }

  get(actionId: string): SmartAction | undefined {
    return this.byId.get(actionId);
  }

  /** Takes in a copy of an action; returns the room's copy when it is new or its state changed, else undefined. */
  upsert(info: SmartActionInfo): SmartAction | undefined {
    if (!info.actionId) return undefined;
    const known = this.byId.get(info.actionId);
    if (known && (known.state === info.state || info.state === 'requested')) return undefined;
    const action = smartActionFrom(info);
    this.byId.set(action.actionId, action);
    if (known) this.list[this.list.indexOf(known)] = action;
    else this.list.splice(this.insertionIndex(action), 0, action);
    return action;
  }

  /** After every action requested at the same time or earlier: new ones (the usual case) go last at once. */
  private insertionIndex(action: SmartAction): number {
    let index = this.list.length;
    while (index > 0 && this.list[index - 1]!.requestedAtMs > action.requestedAtMs) index--;
    return index;
  }
}

/** The SDK's copy of an action: int64 fields as numbers whatever the JSON held, defaults filled in. */
export function smartActionFrom(info: SmartActionInfo): SmartAction {
  return {
    actionId: info.actionId,
    kind: info.kind,
    state: info.state,
    requestedBy: info.requestedBy ?? '',
    participantId: info.participantId ?? '',
    externalId: info.externalId ?? '',
    requestedAtMs: Number(info.requestedAtMs ?? 0),
    completedAtMs: Number(info.completedAtMs ?? 0),
    artifactId: info.artifactId ?? '',
    contentType: info.contentType ?? '',
    sizeBytes: Number(info.sizeBytes ?? 0),
    webauthnOptions: info.webauthnOptions as SmartAction['webauthnOptions'],
    verified: info.verified ?? false,
    reason: info.reason ?? '',
  };
}
