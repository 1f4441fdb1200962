import { Emitter } from '../events.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { DeskClient, type DeskOptions } from './DeskClient.js';
import { toDeskJoin, toQueueView, type DeskJoin, type QueueView } from './types.js';

/**
 * How a supervisor is in a contact's call: `monitor` sees and hears everyone, sends nothing, and
 * is seen by other supervisors only; `whisper` is heard by the agent only (the end user is never
 * told of them); `barge` joins the call as everyone sees it.
 */
export type SupervisionMode = 'monitor' | 'whisper' | 'barge';

export type SupervisorDeskEvents = {
  /** Every queue's figures and every agent's state, at most once a second while anything changes. */
  queues: [view: QueueView];
  /** The desk connection is lost for good (the token was refused, or reconnecting gave up); the desk is closed. */
  error: [error: GatewayError];
};

/** A supervisor's desk, from `Gateway.supervisor()`: the queues and the agents, as they change. */
export class SupervisorDesk extends Emitter<SupervisorDeskEvents> {
  private readonly client: DeskClient;
  private latest: QueueView | undefined;

  private constructor(options: DeskOptions) {
    super();
    this.client = new DeskClient(options, 'supervisor');
    this.client.on('notification', (event) => {
      if (event.$case === 'queues') this.update(toQueueView(event.value));
    });
    this.client.on('failed', (error) => {
      this.emit('error', error);
      this.close();
    });
  }

  /** Connects to the desk with a supervisor's desk token; rejects with a GatewayError. */
  static async create(options: DeskOptions): Promise<SupervisorDesk> {
    const desk = new SupervisorDesk(options);
    try {
      await desk.client.connect();
    } catch (error) {
      desk.close();
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
    return desk;
  }

  /** The latest view, from queueView() or a `queues` event. */
  get view(): QueueView | undefined {
    return this.latest;
  }

  /** Every queue's figures and every agent's state now (also announced as a `queues` event). */
  async queueView(): Promise<QueueView> {
    const view = toQueueView(await this.client.expect('queueView', {}, 'queues'));
    this.update(view);
    return view;
  }

  /**
   * Monitors a contact in a call (its id from the view's agents): resolves with its room and a
   * join token to pass to `Gateway.connect({ url, token })`, which publishes nothing. The end
   * user's app never lists the supervisor.
   */
  monitor(contactId: string): Promise<DeskJoin> {
    return this.supervise(contactId, 'monitor');
  }

  /**
   * Whispers to the agent of a contact in a call: like `monitor`, and the token may publish the
   * microphone, which only the agents of the call receive.
   */
  whisper(contactId: string): Promise<DeskJoin> {
    return this.supervise(contactId, 'whisper');
  }

  /** Barges into a contact's call: joins it as everyone sees and hears it (camera and microphone). */
  barge(contactId: string): Promise<DeskJoin> {
    return this.supervise(contactId, 'barge');
  }

  /**
   * Joins a contact's call in one of the modes. Going from one mode to another is leaving the
   * room and connecting with the new token. Rejects with NOT_FOUND (no such contact) or
   * INVALID_STATE (it is not in a call).
   */
  async supervise(contactId: string, mode: SupervisionMode): Promise<DeskJoin> {
    return toDeskJoin(await this.client.expect('supervise', { contactId, mode }, 'join'));
  }

  /** Closes the desk (idempotent). */
  close(): void {
    this.client.close();
  }

  private update(view: QueueView): void {
    this.latest = view;
    this.emit('queues', view);
  }
}
