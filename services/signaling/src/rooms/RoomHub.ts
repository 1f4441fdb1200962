import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, type Logger, type NatsConnection, type WebhookEventInput, type WebhookEvents } from '@gateway/common';
import { RoomEventBus, type RoomEventSubscription } from '@gateway/cluster';
import { Roster } from '../participant/roster.js';

export interface RoomMember {
  readonly participantId: string;
  onRoomEvent(event: RoomEvent): void;
}

/** Who hears a served room's events here. */
interface RoomAudience {
  members: Map<string, RoomMember>;
  /** Who is in the room, once a join asked (RoomHub.roster); the events heard while it is listed wait in `heard`. */
  roster?: { ready: Roster } | { listing: Promise<Roster>; heard: RoomEvent[] };
}

interface ServedRoom extends RoomAudience {
  tenant: string;
  room: string;
  subscription: RoomEventSubscription;
}

/**
 * A room event to the room's roster first, then to its members: a session added while the event
 * is relayed hears it itself, and the roster it is shown already has it (JoinService.join).
 */
function relay(audience: RoomAudience, event: RoomEvent): void {
  const roster = audience.roster;
  if (roster && 'ready' in roster) roster.ready.apply(event);
  else roster?.heard.push(event);
  for (const each of [...audience.members.values()]) each.onRoomEvent(event);
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
    // Events published while the connection was down never reach this replica: the rosters kept
    // from them may have missed one, and each room is listed afresh at its next join.
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'disconnect' || status.type === 'reconnect') this.forgetRosters();
    })();
  }

  /** Drops every roster kept (RoomHub.roster): the next join of each room lists it. */
  forgetRosters(): void {
    for (const served of this.rooms.values()) served.roster = undefined;
  }

  add(tenant: string, room: string, member: RoomMember): void {
    const key = `${tenant}/${room}`;
    let served = this.rooms.get(key);
    if (!served) {
      const audience: RoomAudience = { members: new Map() };
      const subscription = this.bus.subscribe(tenant, room, (event) => relay(audience, event));
      served = Object.assign(audience, { tenant, room, subscription });
      this.rooms.set(key, served);
      this.tenantRooms.set(tenant, (this.tenantRooms.get(tenant) ?? 0) + 1);
    }
    served.members.set(member.participantId, member);
  }

  /**
   * Makes the room one this replica serves for a participant about to join, before its join
   * reads the room's roster, until its session takes its place (`add` with the same participant
   * id; `remove` if the join fails first). What the room does meanwhile is in the roster.
   */
  watch(tenant: string, room: string, participantId: string): void {
    this.add(tenant, room, { participantId, onRoomEvent: () => undefined });
  }

  /**
   * The room's participants as this replica knows them: listed once (`list`, the store's
   * listing) when the first join of the room here asks, then kept from the room's events for as
   * long as this replica serves the room, and dropped with it. The room must be served (the
   * asking join watches it): its events are subscribed to before the listing is read, so the
   * listing with the events heard since is the room as it is (participant/roster.ts). A listing
   * that fails is tried again by the next join.
   */
  roster(tenant: string, room: string, list: () => Promise<ParticipantInfo[]>): Promise<Roster> {
    const served = this.rooms.get(`${tenant}/${room}`);
    if (!served) return Promise.reject(new GatewayError(ErrorCode.INTERNAL, `the room ${tenant}/${room} is not served here: watch it first`));
    if (served.roster) return 'ready' in served.roster ? Promise.resolve(served.roster.ready) : served.roster.listing;
    const heard: RoomEvent[] = [];
    const listing = list().then(
      (listed) => {
        const roster = new Roster(listed);
        for (const event of heard) roster.apply(event);
        if (served.roster && 'listing' in served.roster && served.roster.listing === listing) served.roster = { ready: roster };
        return roster;
      },
      (error: unknown) => {
        if (served.roster && 'listing' in served.roster && served.roster.listing === listing) served.roster = undefined;
        throw error;
      },
    );
    served.roster = { listing, heard };
    return listing;
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
