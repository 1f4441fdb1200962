import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { Logger, NatsConnection, WebhookEventInput, WebhookEvents } from '@gateway/common';
import { RoomEventBus, type RoomEventSubscription } from '@gateway/cluster';

export interface RoomMember {
  readonly participantId: string;
  onRoomEvent(event: RoomEvent): void;
}

interface ServedRoom {
  tenant: string;
  room: string;
  members: Map<string, RoomMember>;
  subscription: RoomEventSubscription;
}

/**
 * Fans room events out to this replica's sessions. A replica subscribes to a room's events (the
 * cluster's room-event bus: checked, in the publisher's trace) while it holds at least one
 * session of the room, and relays every event (its own included) to those sessions, so all
 * replicas serving a room see the same events in the same order.
 */
export class RoomHub {
  private readonly rooms = new Map<string, ServedRoom>();
  /** Rooms served here per tenant, kept as rooms come and go (the tenants' room limits read it at every join). */
  private readonly tenantRooms = new Map<string, number>();
  private readonly bus: RoomEventBus;

  constructor(
    nc: NatsConnection,
    origin: string,
    log: Logger,
    private readonly webhooks?: WebhookEvents,
  ) {
    this.bus = new RoomEventBus(nc, origin, log);
  }

  add(tenant: string, room: string, member: RoomMember): void {
    const key = `${tenant}/${room}`;
    let served = this.rooms.get(key);
    if (!served) {
      const members = new Map<string, RoomMember>();
      const subscription = this.bus.subscribe(tenant, room, (event) => {
        for (const each of [...members.values()]) each.onRoomEvent(event);
      });
      served = { tenant, room, members, subscription };
      this.rooms.set(key, served);
      this.tenantRooms.set(tenant, (this.tenantRooms.get(tenant) ?? 0) + 1);
    }
    served.members.set(member.participantId, member);
  }

  /**
   * Subscribes a participant about to join to the room's events before its join lists the room,
   * keeping what it hears until its session takes its place (`add` with the same participant id;
   * `remove` if the join fails first): applied to the listing, they leave no gap between it and
   * the session's own subscription.
   */
  watch(tenant: string, room: string, participantId: string): RoomEvent[] {
    const heard: RoomEvent[] = [];
    this.add(tenant, room, { participantId, onRoomEvent: (event) => heard.push(event) });
    return heard;
  }

  remove(tenant: string, room: string, participantId: string): void {
    const key = `${tenant}/${room}`;
    const served = this.rooms.get(key);
    if (!served) return;
    served.members.delete(participantId);
    if (served.members.size === 0) {
      served.subscription.unsubscribe();
      this.rooms.delete(key);
      const left = (this.tenantRooms.get(tenant) ?? 1) - 1;
      if (left > 0) this.tenantRooms.set(tenant, left);
      else this.tenantRooms.delete(tenant);
    }
  }

  members(tenant: string, room: string): RoomMember[] {
    return [...(this.rooms.get(`${tenant}/${room}`)?.members.values() ?? [])];
  }

  servedRooms(): Array<{ tenant: string; room: string }> {
    return [...this.rooms.values()].map(({ tenant, room }) => ({ tenant, room }));
  }

  /** How many rooms this replica serves, per tenant. */
  roomsPerTenant(): ReadonlyMap<string, number> {
    return this.tenantRooms;
  }

  /** The request that caused the event (a join, a new track) continues on every replica of the room. */
  publish(tenant: string, room: string, event: RoomEvent['event']): void {
    this.bus.publish(tenant, room, event);
    const webhook = event && webhookOf(room, event);
    if (webhook) this.webhooks?.emit(tenant, webhook);
  }

  /** Makes sure everything published so far has reached the server. */
  flush(): Promise<void> {
    return this.bus.flush();
  }

  close(): void {
    for (const served of this.rooms.values()) served.subscription.unsubscribe();
    this.rooms.clear();
    this.tenantRooms.clear();
  }
}

/**
 * The tenant's webhook of a room event, for the events a backend is told about: every join,
 * leave and new track of the room passes here once, on the replica where it happened.
 */
function webhookOf(room: string, event: NonNullable<RoomEvent['event']>): WebhookEventInput | undefined {
  switch (event.$case) {
    case 'participantJoined': {
      const { participantId, identity, role, name } = event.value;
      return {
        type: 'participant.joined',
        key: participantId,
        data: { room: { name: room }, participant: { participantId, identity, role: role === 'agent' || role === 'supervisor' ? role : 'end_user', name } },
      };
    }
    case 'participantLeft':
      return {
        type: 'participant.left',
        key: event.value.participantId,
        data: { room: { name: room }, participant: { participantId: event.value.participantId }, reason: event.value.reason || 'left' },
      };
    case 'producerAdded': {
      const track = event.value.track;
      if (!track) return undefined;
      const source = (['camera', 'microphone', 'screen', 'screen_audio'] as const).find((known) => known === track.source) ?? 'unknown';
      return {
        type: 'track.published',
        key: track.producerId,
        data: { room: { name: room }, participant: { participantId: event.value.participantId }, track: { trackId: track.producerId, source, kind: track.kind === 'audio' ? 'audio' : 'video' } },
      };
    }
    default:
      return undefined;
  }
}
