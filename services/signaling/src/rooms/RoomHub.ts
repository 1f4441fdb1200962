import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { decodeChecked, inMessageSpan, natsHeadersWithTrace, roomEventAttributes, roomEventSchema, subjects, type Logger, type NatsConnection } from '@gateway/common';
import type { Subscription } from '@nats-io/transport-node';

export interface RoomMember {
  readonly participantId: string;
  onRoomEvent(event: RoomEvent): void;
}

interface ServedRoom {
  tenant: string;
  room: string;
  members: Map<string, RoomMember>;
  subscription: Subscription;
}

/**
 * Fans room events out over NATS. A replica subscribes to a room's subject while it holds at
 * least one session of the room, and relays every event (its own included) to those sessions,
 * so all replicas serving a room see the same events in the same order.
 */
export class RoomHub {
  private readonly rooms = new Map<string, ServedRoom>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly origin: string,
    private readonly log: Logger,
  ) {}

  add(tenant: string, room: string, member: RoomMember): void {
    const key = `${tenant}/${room}`;
    let served = this.rooms.get(key);
    if (!served) {
      const subscription = this.nc.subscribe(subjects.roomEvents(tenant, room));
      served = { tenant, room, members: new Map(), subscription };
      this.rooms.set(key, served);
      void this.relay(served);
    }
    served.members.set(member.participantId, member);
  }

  remove(tenant: string, room: string, participantId: string): void {
    const key = `${tenant}/${room}`;
    const served = this.rooms.get(key);
    if (!served) return;
    served.members.delete(participantId);
    if (served.members.size === 0) {
      served.subscription.unsubscribe();
      this.rooms.delete(key);
    }
  }

  members(tenant: string, room: string): RoomMember[] {
    return [...(this.rooms.get(`${tenant}/${room}`)?.members.values() ?? [])];
  }

  servedRooms(): Array<{ tenant: string; room: string }> {
    return [...this.rooms.values()].map(({ tenant, room }) => ({ tenant, room }));
  }

  publish(tenant: string, room: string, event: RoomEvent['event']): void {
    const message = RoomEvent.create({ tenant, room, atMs: Date.now(), origin: this.origin, event });
    // The request that caused the event (a join, a new track) continues on every replica of the room.
    this.nc.publish(subjects.roomEvents(tenant, room), RoomEvent.encode(message).finish(), { headers: natsHeadersWithTrace() });
  }

  /** Makes sure everything published so far has reached the server. */
  flush(): Promise<void> {
    return this.nc.flush();
  }

  private async relay(served: ServedRoom): Promise<void> {
    for await (const message of served.subscription) {
      let event: RoomEvent;
      try {
        // Anyone who may publish on the room's subject could send anything: checked, never trusted.
        event = decodeChecked(RoomEvent, message.data, roomEventSchema, 'room event');
      } catch (error) {
        this.log.warn({ err: error, room: `${served.tenant}/${served.room}` }, 'invalid room event dropped');
        continue;
      }
      if (event.tenant !== served.tenant || event.room !== served.room) continue;
      const kind = event.event?.$case ?? 'unknown';
      inMessageSpan(`room event ${kind}`, message.headers, roomEventAttributes(event.tenant, event.room, kind), () => {
        for (const member of [...served.members.values()]) member.onRoomEvent(event);
      });
    }
  }

  close(): void {
    for (const served of this.rooms.values()) served.subscription.unsubscribe();
    this.rooms.clear();
  }
}
