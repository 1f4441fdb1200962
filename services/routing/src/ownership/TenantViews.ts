import { ErrorCode, GatewayError, openJson, type Keyring, type Logger } from '@gateway/common';
import { AgentStatus, Channel, ContactPhase, ContactState as ContactStateMessage, type AgentState, type ContactState, type Offer, type QueueView } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { Agent, Channel as ChannelName, Contact } from '../engine/model.js';
import type { TenantDirectory } from '../directory/view.js';
import type { QueueStatistics } from './QueueStatistics.js';

/** The protocol's channel of each of the engine's. */
export const channelOf: Record<ChannelName, Channel> = { voice: Channel.CHANNEL_VOICE, video: Channel.CHANNEL_VIDEO, chat: Channel.CHANNEL_CHAT };
const statusOf: Record<Agent['status'], AgentStatus> = {
  available: AgentStatus.AGENT_STATUS_AVAILABLE,
  away: AgentStatus.AGENT_STATUS_AWAY,
  after_contact_work: AgentStatus.AGENT_STATUS_AFTER_CONTACT_WORK,
  offline: AgentStatus.AGENT_STATUS_OFFLINE,
};

/** What a contact's sealed part holds: never in a log, never outside this tenant. */
export interface SealedAbout {
  name: string;
  context: Record<string, string>;
}

/**
 * A tenant's routing as each side sees it (docs/routing.md): a contact's state for its end user
 * and agent, an agent's state and the offer they hold, the supervisors' view of the queues. Read
 * from the engine as it is now; nothing here changes it.
 */
export class TenantViews {
  constructor(
    private readonly tenant: string,
    private readonly engine: RoutingEngine,
    private readonly directory: TenantDirectory,
    private readonly statistics: QueueStatistics,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  contactState(contact: Readonly<Contact>): ContactState {
    const place = contact.state === 'connected' ? undefined : this.engine.placeOf(contact.contactId);
    return {
      contactId: contact.contactId,
      phase: phaseOf(contact),
      queueId: contact.queueId,
      channel: channelOf[contact.channel],
      position: contact.state === 'connected' ? 0 : (place?.position ?? 0),
      estimatedWaitSeconds: contact.state === 'connected' ? 0 : (place?.estimatedWaitSeconds ?? 0),
      room: contact.state === 'connected' ? (contact.about?.room ?? roomOf(contact.contactId)) : '',
      agentId: contact.state === 'connected' ? (contact.agentId ?? '') : '',
      endReason: '',
      requestedAtMs: contact.requestedAtMs,
    };
  }

  async offerOf(contact: Readonly<Contact>): Promise<Offer> {
    const about = await this.opened(contact);
    const shown = this.directory.queues.get(contact.queueId)?.contextFields;
    // Only the fields the queue lets agents see (none named: all of them). Never a phone number: the token's contact details are not here at all.
    const context = shown ? Object.fromEntries(Object.entries(about.context).filter(([key]) => shown.includes(key))) : about.context;
    const lastTransfer = contact.about?.transfers?.at(-1);
    return {
      contactId: contact.contactId,
      queueId: contact.queueId,
      channel: channelOf[contact.channel],
      expiresAtMs: contact.offer?.expiresAtMs ?? 0,
      contextJson: JSON.stringify(context),
      name: about.name,
      requestedAtMs: contact.requestedAtMs,
      transferredBy: lastTransfer?.fromAgentId ?? '',
    };
  }

  private async opened(contact: Readonly<Contact>): Promise<SealedAbout> {
    if (!contact.about?.sealed) return { name: '', context: {} };
    try {
      return await openJson<SealedAbout>(this.keyring, this.tenant, `routing-contact:${contact.contactId}`, contact.about.sealed);
    } catch (error) {
      this.log.warn({ tenant: this.tenant, contactId: contact.contactId, err: error }, "a contact's details do not open; offered without them");
      return { name: '', context: {} };
    }
  }

  async agentState(agentId: string): Promise<AgentState> {
    const agent = this.engine.agents.get(agentId);
    if (!agent) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such agent');
    const offered = agent.offeredContactId ? this.engine.contacts.get(agent.offeredContactId) : undefined;
    const held = this.engine.heldBy(agentId);
    const busy = agent.status === 'available' && held.length > 0;
    const handingOver = held.filter((c) => c.handingOver?.includes(agentId));
    return {
      agentId,
      status: busy ? AgentStatus.AGENT_STATUS_BUSY : statusOf[agent.status],
      reason: agent.awayReason ?? '',
      offer: offered ? await this.offerOf(offered) : undefined,
      // A contact handed over warm is in its room whatever its phase: the room is said.
      contacts: held.map((c) => ({ ...this.contactState(c), room: c.about?.room ?? roomOf(c.contactId) })),
      wrapUpContactIds: (agent.pendingRecords ?? []).map((p) => p.contactId),
      handingOverContactIds: handingOver.map((c) => c.contactId),
    };
  }

  /** The supervisors' view (and the metrics' source at each scrape): one walk over the queued contacts and the agents. */
  queueView(): QueueView {
    const nowMs = this.now();
    const agents = [...this.engine.agents.values()].map((agent) => ({ agent, held: this.engine.heldBy(agent.agentId) }));
    const connected = new Map<string, number>();
    for (const { held } of agents) for (const contact of held) connected.set(contact.queueId, (connected.get(contact.queueId) ?? 0) + 1);
    return {
      atMs: nowMs,
      queues: [...this.engine.queues.values()].map((queue) => {
        const waiting = this.engine.queuedIn(queue.queueId);
        let longestWaitSeconds = 0;
        let offered = 0;
        for (const contact of waiting) {
          longestWaitSeconds = Math.max(longestWaitSeconds, Math.floor((nowMs - contact.requestedAtMs) / 1000));
          if (contact.state === 'offered') offered++;
        }
        // The last in the order of service waits the longest from now.
        const last = waiting.at(-1);
        return {
          queueId: queue.queueId,
          name: this.directory.queues.get(queue.queueId)?.name ?? queue.queueId,
          waiting: waiting.length,
          longestWaitSeconds,
          offered,
          connected: connected.get(queue.queueId) ?? 0,
          ...this.statistics.today(queue.queueId),
          estimatedWaitSeconds: Math.max(0, last ? (this.engine.placeOf(last.contactId)?.estimatedWaitSeconds ?? 0) : 0),
          serviceLevelSeconds: queue.serviceLevelSeconds,
        };
      }),
      agents: agents.map(({ agent, held }) => ({
        agentId: agent.agentId,
        name: this.directory.people.get(agent.agentId)?.name ?? '',
        status: agent.status === 'available' && held.length > 0 ? AgentStatus.AGENT_STATUS_BUSY : statusOf[agent.status],
        reason: agent.awayReason ?? '',
        contactIds: held.map((c) => c.contactId),
        rooms: held.map((c) => c.about?.room ?? roomOf(c.contactId)),
      })),
    };
  }
}

export function phaseOf(contact: Readonly<Contact>): ContactPhase {
  if (contact.state === 'connected') return ContactPhase.CONTACT_PHASE_CONNECTED;
  if (contact.state === 'offered') return ContactPhase.CONTACT_PHASE_OFFERED;
  return contact.callback ? ContactPhase.CONTACT_PHASE_CALLBACK : ContactPhase.CONTACT_PHASE_QUEUED;
}

/** The room of a contact: named after it, so every replica names it alike. */
export const roomOf = (contactId: string) => `cc_${contactId}`;

export function emptyContactState(): ContactState {
  return {
    contactId: '',
    phase: ContactPhase.CONTACT_PHASE_UNSPECIFIED,
    queueId: '',
    channel: Channel.CHANNEL_UNSPECIFIED,
    position: 0,
    estimatedWaitSeconds: 0,
    room: '',
    agentId: '',
    endReason: '',
    requestedAtMs: 0,
  };
}

export const encodeContactState = (state: ContactState) => ContactStateMessage.encode(state).finish();
