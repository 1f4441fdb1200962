import { Emitter } from '../events.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { DeskClient, type DeskOptions } from './DeskClient.js';
import { toQueueView, type QueueView } from './types.js';

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

  /** Closes the desk (idempotent). */
  close(): void {
    this.client.close();
  }

  private update(view: QueueView): void {
    this.latest = view;
    this.emit('queues', view);
  }
}
