import { Emitter } from '../events.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { DeskClient, type DeskEvent, type DeskOptions, type DeskResult } from './DeskClient.js';
import { toAgentState, toContact, toDeskJoin, toOffer, type AgentState, type Contact, type DeskJoin, type Offer, type OfferWithdrawn } from './types.js';

/** Where a transfer goes: any agent of a queue, or one named agent. */
export type TransferTarget = { queue: string } | { agentId: string };

export interface TransferOptions {
  /**
   * The other agent joins the room while this one stays: the contact stays this agent's (busy,
   * its capacity in use) until completeTransfer(). False: this one hands over and goes at once.
   */
  warm?: boolean;
}

export interface WrapUpOptions {
  /** What came of the contact, in the tenant's own terms. */
  disposition?: string;
  notes?: string;
  /** What the agent is next: `available` (the default) or `away`. */
  next?: 'available' | 'away';
  /** Why away, when `next` is `away`. */
  reason?: string;
}

export type AgentDeskEvents = {
  /** A contact is offered to this agent: accept() or decline() it before `expiresAtMs`. */
  offer: [offer: Offer];
  /** The offer went elsewhere (declined, expired, withdrawn, or the end user left). */
  offerWithdrawn: [withdrawn: OfferWithdrawn];
  /** The agent's state as the server tells it (its status, offer and contacts): on a change, after an answer, after a reconnection. */
  status: [state: AgentState];
  /** A room to join that accept() did not give (the next agent of a transfer joins through accept(), like any offer). */
  connected: [join: DeskJoin];
  /**
   * A contact this agent held is over for it (ended, or handed over: `endReason` `transferred` or
   * `transferred_warm`); leave its room. After-contact work follows when it was the last (wrapUp()).
   */
  contactEnded: [contact: Contact];
  /** The desk connection is lost for good (the token was refused, or reconnecting gave up); the desk is closed. */
  error: [error: GatewayError];
};

/**
 * An agent's desk, from `Gateway.agent()`: its status, the contacts offered to it and those it
 * serves. Its state when the promise resolves is announced right after (`status`, and `offer`
 * when it holds one), so listeners added at once see it. If the connection drops it connects
 * again and reads its state afresh.
 */
export class AgentDesk extends Emitter<AgentDeskEvents> {
  private readonly client: DeskClient;
  private stateValue: AgentState = { agentId: '', status: 'offline', reason: '', offer: undefined, contacts: [], wrapUpContactIds: [], handingOverContactIds: [] };
  /** Contacts whose room accept() gave: their `connected` notification is not announced again. */
  private readonly accepted = new Set<string>();

  private constructor(options: DeskOptions) {
    super();
    this.client = new DeskClient(options, 'agent');
    this.client.on('notification', (event) => this.onNotification(event));
    this.client.on('reconnected', (welcome) => welcome.agent && this.applyState(toAgentState(welcome.agent)));
    this.client.on('failed', (error) => {
      this.emit('error', error);
      this.close();
    });
  }

  /** Connects to the desk with an agent's desk token; rejects with a GatewayError. */
  static async create(options: DeskOptions): Promise<AgentDesk> {
    const desk = new AgentDesk(options);
    try {
      const welcome = await desk.client.connect();
      if (welcome.agent) desk.stateValue = toAgentState(welcome.agent);
    } catch (error) {
      desk.close();
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
    setTimeout(() => {
      if (desk.client.isClosed) return;
      desk.emit('status', desk.stateValue);
      if (desk.stateValue.offer) desk.emit('offer', desk.stateValue.offer);
    }, 0);
    return desk;
  }

  get state(): AgentState {
    return this.stateValue;
  }

  get agentId(): string {
    return this.stateValue.agentId;
  }

  get status(): AgentState['status'] {
    return this.stateValue.status;
  }

  /** The offer held now. */
  get offer(): Offer | undefined {
    return this.stateValue.offer;
  }

  /** The contacts served now. */
  get contacts(): readonly Contact[] {
    return this.stateValue.contacts;
  }

  /** Available (offers come) or away (they do not); resolves with the state that follows. */
  async setStatus(status: 'available' | 'away', reason = ''): Promise<AgentState> {
    this.applyResult(await this.client.request('setStatus', { status, reason }));
    return this.stateValue;
  }

  /** Accepts the offer (the one held now by default): resolves with the room to join. */
  async accept(contactId = this.offer?.contactId): Promise<DeskJoin> {
    if (!contactId) throw new GatewayError(ErrorCode.INVALID_STATE, 'no offer to accept');
    const join = toDeskJoin(await this.client.expect('accept', { contactId }, 'join'));
    this.accepted.add(contactId);
    const contacts = [...this.stateValue.contacts.filter((c) => c.contactId !== contactId), join.contact];
    const offer = this.offer?.contactId === contactId ? undefined : this.offer;
    // Holding a contact while available is busy, as routing counts it.
    const status = this.stateValue.status === 'available' ? 'busy' : this.stateValue.status;
    const changed = status !== this.stateValue.status;
    this.stateValue = { ...this.stateValue, offer, contacts, status };
    if (changed) this.emit('status', this.stateValue);
    return join;
  }

  /** Declines the offer (the one held now by default); it moves on to another agent. */
  async decline(contactId = this.offer?.contactId): Promise<void> {
    if (!contactId) throw new GatewayError(ErrorCode.INVALID_STATE, 'no offer to decline');
    this.applyResult(await this.client.request('decline', { contactId }));
    if (this.offer?.contactId === contactId) this.stateValue = { ...this.stateValue, offer: undefined };
  }

  /**
   * Hands a contact over to a queue or to a named agent. Cold (the default), this agent's part
   * ends now (`contactEnded`); warm, it stays in the room with the end user and the next agent
   * until completeTransfer(), and is offered nothing that would need the contact's capacity.
   */
  async transfer(contactId: string, to: TransferTarget, options: TransferOptions = {}): Promise<void> {
    const queue = 'queue' in to ? to.queue : '';
    const agentId = 'agentId' in to ? to.agentId : '';
    this.applyResult(await this.client.request('transfer', { contactId, queue, agentId, warm: options.warm ?? false }));
  }

  /**
   * Completes a warm transfer: this agent leaves the contact (whether or not the next agent took it
   * yet), `contactEnded` follows with `endReason` `transferred_warm`, then after-contact work for
   * its part when it was its last contact (wrapUp(); the contact's record is the last agent's).
   * Done for it too when its app is gone past the grace period, or when the contact ends.
   */
  async completeTransfer(contactId: string): Promise<void> {
    this.applyResult(await this.client.request('completeTransfer', { contactId }));
  }

  /** Ends a contact this agent serves; after-contact work follows (wrapUp()). */
  async end(contactId: string): Promise<void> {
    this.applyResult(await this.client.request('end', { contactId }));
  }

  /** Ends a contact's after-contact work with what came of it; the agent is then available (or away). */
  async wrapUp(contactId: string, options: WrapUpOptions = {}): Promise<void> {
    const { disposition = '', notes = '', next = 'available', reason = '' } = options;
    this.applyResult(await this.client.request('wrapUp', { contactId, disposition, notes, next, reason }));
  }

  /** Closes the desk (idempotent); the agent goes offline once the server sees it gone. */
  close(): void {
    this.client.close();
  }

  // ------------------------------------------------------------------------- internals

  private onNotification(event: DeskEvent): void {
    switch (event.$case) {
      case 'offered': {
        const offer = toOffer(event.value);
        this.stateValue = { ...this.stateValue, offer };
        this.emit('offer', offer);
        break;
      }
      case 'offerWithdrawn': {
        const { contactId, reason } = event.value;
        if (this.offer?.contactId === contactId) this.stateValue = { ...this.stateValue, offer: undefined };
        this.emit('offerWithdrawn', { contactId, reason });
        break;
      }
      case 'agent':
        this.applyState(toAgentState(event.value));
        break;
      case 'connected': {
        const join = toDeskJoin(event.value);
        const contacts = [...this.stateValue.contacts.filter((c) => c.contactId !== join.contact.contactId), join.contact];
        this.stateValue = { ...this.stateValue, contacts };
        if (!this.accepted.has(join.contact.contactId)) this.emit('connected', join);
        break;
      }
      case 'contactEnded': {
        const contact = toContact(event.value);
        this.accepted.delete(contact.contactId);
        const offer = this.offer?.contactId === contact.contactId ? undefined : this.offer;
        this.stateValue = { ...this.stateValue, offer, contacts: this.stateValue.contacts.filter((c) => c.contactId !== contact.contactId) };
        this.emit('contactEnded', contact);
        break;
      }
    }
  }

  /** A whole state from the server: announced, and its offer too when it is new here. */
  private applyState(state: AgentState): void {
    const fresh = state.offer && state.offer.contactId !== this.offer?.contactId ? state.offer : undefined;
    this.stateValue = state;
    this.emit('status', state);
    if (fresh) this.emit('offer', fresh);
  }

  private applyResult(result: DeskResult): void {
    if (result.$case === 'agent') this.applyState(toAgentState(result.value));
  }
}
