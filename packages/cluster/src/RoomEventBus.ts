import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { decodeChecked, inMessageSpan, natsHeadersWithTrace, roomEventAttributes, roomEventSchema, subjects, type Logger, type NatsConnection } from '@gateway/common';

/** The kinds of room event (`participantJoined`, `producerAdded`, `roomClosed`, ...). */
export type RoomEventKind = NonNullable<RoomEvent['event']>['$case'];

/** Handles one event of the room; a returned promise is awaited before the next event. */
export type RoomEventHandler = (event: RoomEvent) => void | Promise<void>;

/** A subscription to one room's events. */
export interface RoomEventSubscription {
  unsubscribe(): void;
}

/**
 * A room event as read from NATS: anyone who may publish on the room's subject could send
 * anything, so it is checked (MALFORMED_MESSAGE when it fails), never trusted.
 */
export function decodeRoomEvent(data: Uint8Array): RoomEvent {
  return decodeChecked(RoomEvent, data, roomEventSchema, 'room event');
}

/** The wire form of one event of a room, stamped with the time and the publishing node or replica. */
export function encodeRoomEvent(tenant: string, room: string, origin: string, event: RoomEvent['event']): Uint8Array {
  return RoomEvent.encode(RoomEvent.create({ tenant, room, atMs: Date.now(), origin, event })).finish();
}

/**
 * Room events over NATS (`gateway.<tenant>.room.<room>.events`), one place for the SFU nodes, the
 * recorders and signaling. Publishing carries the caller's trace context in the headers, so the
 * request that caused an event continues wherever it is handled; subscribing decodes and checks
 * each event, drops those of another room, and runs the handler in the event's trace.
 */
export class RoomEventBus {
  /** `origin`: who publishes (a node or replica id), stamped on every event. */
  constructor(
    private readonly nc: NatsConnection,
    private readonly origin: string,
    private readonly log: Logger,
  ) {}

  /** Publishes one event of the room; throws as NATS does when the connection is closed. */
  publish(tenant: string, room: string, event: RoomEvent['event']): void {
    this.nc.publish(subjects.roomEvents(tenant, room), encodeRoomEvent(tenant, room, this.origin, event), { headers: natsHeadersWithTrace() });
  }

  /**
   * Every event of the room (this publisher's own included), in order: one handler call at a
   * time. An invalid event is dropped with a warning; a handler that fails is logged and the
   * next event still comes. `log` carries the subscriber's own fields into those lines.
   */
  subscribe(tenant: string, room: string, handler: RoomEventHandler, log: Logger = this.log): RoomEventSubscription {
    const subscription = this.nc.subscribe(subjects.roomEvents(tenant, room));
    void (async () => {
      for await (const message of subscription) {
        let event: RoomEvent;
        try {
          event = decodeRoomEvent(message.data);
        } catch (error) {
          log.warn({ err: error, room: `${tenant}/${room}` }, 'invalid room event dropped');
          continue;
        }
        if (event.tenant !== tenant || event.room !== room) continue;
        const kind = event.event?.$case ?? 'unknown';
        try {
          await inMessageSpan(`room event ${kind}`, message.headers, roomEventAttributes(tenant, room, kind), () => handler(event));
        } catch (error) {
          log.warn({ err: error, room: `${tenant}/${room}`, kind }, 'handling a room event failed');
        }
      }
    })();
    return { unsubscribe: () => subscription.unsubscribe() };
  }

  /** Makes sure everything published so far has reached the server. */
  flush(): Promise<void> {
    return this.nc.flush();
  }
}
