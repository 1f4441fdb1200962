import { Emitter } from '../events.js';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import { Room } from '../Room.js';
import type { ConnectOptions } from '../types.js';
import { DeskClient, type DeskEvent, type DeskOptions, type DeskResult } from './DeskClient.js';
import { toContact, toDeskJoin, type Contact, type ContactPhase, type SupportChannel } from './types.js';

/** What `Gateway.requestSupport()` takes: the desk connection, and what the end user asks for. */
export interface SupportRequestOptions extends DeskOptions {
  /** The queue to wait in (its id, as configured for the tenant). */
  queue: string;
  channel: SupportChannel;
  /** What the app says about the request (string values, at most 32 fields, 4 KiB in all); agents see the fields the queue lets them see. */
  context?: Record<string, string>;
}

/** The room an agent is waiting in: join it with `token` (or call SupportRequest.join()). */
export interface SupportConnected {
  readonly room: string;
  /** A join token for the room. */
  readonly token: string;
  /** The agent serving the end user. */
  readonly agentId: string;
}

export type SupportRequestEvents = {
  /** Waiting: the place in the queue (1 is next) and the estimated wait (0 when unknown), each time either changes. */
  queued: [update: { position: number; estimatedWaitSeconds: number }];
  /** An agent is being offered the contact. */
  offered: [];
  /** An agent accepted: the room is ready. */
  connected: [join: SupportConnected];
  /** No agent now (waited past the queue's maximum, or outside its hours): the end user will be called back into the app, keeping their place. */
  callback: [];
  /** The contact is over (`completed`, `abandoned` or `expired`); the request is closed. */
  ended: [info: { reason: string }];
  /** The desk connection is lost for good (the token was refused, or reconnecting gave up); the request is closed. */
  error: [error: GatewayError];
};

/**
 * An end user's request for support, from `Gateway.requestSupport()`: waits in a queue until an
 * agent takes it, then gives the room to join. Its state when the promise resolves is announced
 * right after (a `queued` event, say), so listeners added at once see it. If the connection
 * drops, it connects again and asks for the same contact, which keeps its place.
 */
export class SupportRequest extends Emitter<SupportRequestEvents> {
  private readonly client: DeskClient;
  private state: Contact | undefined;
  private joined: SupportConnected | undefined;

  private constructor(private readonly options: SupportRequestOptions) {
    super();
    this.client = new DeskClient(options, 'end_user', () => this.askAgain());
    this.client.on('notification', (event) => this.onNotification(event));
    this.client.on('failed', (error) => {
      this.emit('error', error);
      this.close();
    });
  }

  /** Connects to the desk and asks for support; rejects with a GatewayError (its code the server's). */
  static async create(options: SupportRequestOptions): Promise<SupportRequest> {
    const request = new SupportRequest(options);
    try {
      await request.client.connect();
      const contact = await request.client.expect('requestSupport', request.params(''), 'contact');
      request.state = toContact(contact);
    } catch (error) {
      request.close();
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
    setTimeout(() => request.announce(undefined), 0);
    return request;
  }

  /** The contact's id, the same across reconnections. */
  get contactId(): string {
    return this.contact.contactId;
  }

  get phase(): ContactPhase {
    return this.contact.phase;
  }

  /** The place in the queue: 1 is next; 0 when not waiting. */
  get position(): number {
    return this.contact.position;
  }

  /** 0 when unknown or not waiting. */
  get estimatedWaitSeconds(): number {
    return this.contact.estimatedWaitSeconds;
  }

  /** Everything known of the contact. */
  get contact(): Contact {
    if (!this.state) throw new GatewayError(ErrorCode.INVALID_STATE, 'not requested yet');
    return this.state;
  }

  /** The room to join, once connected. */
  get connected(): SupportConnected | undefined {
    return this.joined;
  }

  /**
   * Joins the room the agent is in (once `connected`), with the desk's url and the room's join
   * token; rejects with INVALID_STATE before.
   */
  join(options: Omit<ConnectOptions, 'url' | 'token' | 'tokenProvider'> = {}): Promise<Room> {
    if (!this.joined) return Promise.reject(new GatewayError(ErrorCode.INVALID_STATE, 'not connected to an agent yet'));
    return Room.connect({ WebSocket: this.options.WebSocket, ...options, url: this.options.url, token: this.joined.token });
  }

  /** Gives up the place in the queue (the contact is abandoned), then closes. */
  async leave(): Promise<void> {
    if (this.client.isClosed) return;
    let result: DeskResult;
    try {
      result = await this.client.request('leaveQueue', {});
    } catch (error) {
      // Ended meanwhile (the server told of it before answering, and the connection closed).
      if (this.state?.phase === 'ended') return;
      throw error;
    }
    if (result.$case === 'contact') this.apply(toContact(result.value));
    this.end('abandoned');
  }

  /**
   * Stops listening and closes the connection (idempotent). The contact is not given up at
   * once: the server ends it when this end user stays away (leave() gives it up now).
   */
  close(): void {
    this.client.close();
  }

  // ------------------------------------------------------------------------- internals

  private params(contactId: string) {
    const { queue, channel, context = {} } = this.options;
    return { queue, channel, context, contactId };
  }

  /** After a reconnection: the same contact again, keeping its place. */
  private async askAgain(): Promise<void> {
    try {
      this.apply(toContact(await this.client.expect('requestSupport', this.params(this.contactId), 'contact')));
    } catch (error) {
      // The contact is gone while away: it is over.
      if (!hasCode(error, ErrorCode.NOT_FOUND)) throw error;
      this.end('expired');
    }
  }

  private onNotification(event: DeskEvent): void {
    if (event.$case === 'contact') this.apply(toContact(event.value));
    else if (event.$case === 'connected') {
      const join = toDeskJoin(event.value);
      this.state = join.contact.contactId ? join.contact : this.state;
      this.joined = { room: join.room, token: join.token, agentId: join.contact.agentId };
      this.emit('connected', this.joined);
    }
  }

  /** Ends the contact here, for ends the server did not tell of. */
  private end(reason: string): void {
    if (this.state) this.apply({ ...this.state, phase: 'ended', position: 0, estimatedWaitSeconds: 0, endReason: reason });
  }

  private apply(contact: Contact): void {
    if (this.state?.phase === 'ended') return;
    const previous = this.state;
    this.state = contact;
    this.announce(previous);
  }

  /** Emits what changed since `previous` (everything when undefined). */
  private announce(previous: Contact | undefined): void {
    const now = this.state;
    if (!now || this.client.isClosed) return;
    const entered = previous?.phase !== now.phase;
    if (now.phase === 'queued' && (entered || previous?.position !== now.position || previous?.estimatedWaitSeconds !== now.estimatedWaitSeconds)) {
      this.emit('queued', { position: now.position, estimatedWaitSeconds: now.estimatedWaitSeconds });
    } else if (now.phase === 'offered' && entered) this.emit('offered');
    else if (now.phase === 'callback' && entered) this.emit('callback');
    else if (now.phase === 'connected' && entered && previous && this.joined && this.joined.room === now.room) {
      // Connected again in the same room (a transfer): the app stays in its room; the agent changed.
      this.joined = { ...this.joined, agentId: now.agentId };
      this.emit('connected', this.joined);
    } else if (now.phase === 'ended') {
      this.emit('ended', { reason: now.endReason || 'completed' });
      this.close();
    }
  }
}
