import type { NatsConnection, Msg, MsgHdrs, Subscription } from '@nats-io/transport-node';
import {
  contextFromNatsHeaders,
  contextFromTraceparent,
  ErrorCode,
  GatewayError,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  SpanKind,
  subjects,
  type Keyring,
  type Logger,
} from '@gateway/common';
import { Command, type ContactRecord, Reply, type QueueView } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingEngine } from '../engine/RoutingEngine.js';
import { RoutingRefusal, type RoutingEvent } from '../engine/events.js';
import type { Contact } from '../engine/model.js';
import { type DirectoryView, TenantDirectory } from '../directory/view.js';
import { AppPresence } from './AppPresence.js';
import { contactRecordOf, holdPartRecord, pendingRecordOf, publishContactRecord } from './contactRecords.js';
import { QueueStatistics } from './QueueStatistics.js';
import { channelNames, id, TenantCommands } from './TenantCommands.js';
import type { TenantOwner } from './TenantOwner.js';
import { contactAttributes, TenantTeller } from './TenantTeller.js';
import { TenantViews } from './TenantViews.js';

export interface TenantRoutingOptions {
  /** An agent's app not reported connected for this long is taken as gone (signaling reports every few seconds). */
  presenceTimeoutMs: number;
  /** An agent's app silent this long (no presence report) goes offline; a return within it resumes. */
  agentGraceMs: number;
  /** An end user's app silent this long leaves the queue (abandoned), unless a callback was offered. */
  endUserGraceMs: number;
  /** How often time is looked at: offers timing out, overflow, callbacks, presence. */
  tickMs: number;
  /** Supervisors' view goes out at most this often while anything changes. */
  queueViewMs: number;
}

export interface RoutingObserver {
  command(kind: string, code: string, durationMs: number): void;
  event(event: RoutingEvent, nowMs: number, contact: Contact | undefined): void;
}

/**
 * The routing of one tenant, run by the replica holding its lease (docs/routing.md): answers the
 * commands on the tenant's subject (validated, then run on the engine through the owner, which
 * stores each decision before it counts), watches time (offers timing out, overflow, callbacks,
 * apps gone quiet), and tells agents, end users and supervisors what changed.
 *
 * This is the owner's face; the parts are apart: what each command does (TenantCommands), what
 * each side sees (TenantViews), what is sent to them (TenantTeller), whose app is still there
 * (AppPresence).
 */
export class TenantRouting {
  private subscription: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly directory: TenantDirectory;
  private readonly presence: AppPresence;
  private readonly statistics: QueueStatistics;
  private readonly views: TenantViews;
  private readonly teller: TenantTeller;
  private readonly commands: TenantCommands;
  private ticking = false;
  private queueViewDirty = true;
  private lastQueueViewMs = 0;

  constructor(
    readonly tenant: string,
    private readonly nc: NatsConnection,
    private readonly owner: TenantOwner,
    directory: DirectoryView,
    keyring: Keyring,
    private readonly log: Logger,
    private readonly options: TenantRoutingOptions,
    private readonly observer?: RoutingObserver,
    private readonly now: () => number = Date.now,
  ) {
    this.directory = new TenantDirectory(directory);
    this.statistics = new QueueStatistics(this.now);
    this.presence = new AppPresence(this.now());
    this.views = new TenantViews(tenant, owner.engine, this.directory, this.statistics, keyring, log, now);
    this.teller = new TenantTeller(tenant, nc, owner.engine, this.views, log, now);
    const host = {
      run: (kind: string, operation: (engine: RoutingEngine) => RoutingEvent[]) => this.run(kind, operation),
      sendRecord: (record: ContactRecord) => this.sendRecord(record),
      queuesChanged: () => {
        this.queueViewDirty = true;
      },
    };
    this.commands = new TenantCommands(tenant, nc, owner.engine, this.directory, this.views, this.presence, this.statistics, keyring, host, now);
  }

  private get engine(): RoutingEngine {
    return this.owner.engine;
  }

  /** Loads the tenant, applies its directory, and starts answering. */
  async start(): Promise<void> {
    await this.owner.load();
    await this.applyDirectory(this.directory.view);
    if (this.closed) return;
    this.subscription = this.nc.subscribe(subjects.routingCommand(this.tenant), { callback: (error, msg) => (error ? undefined : void this.onCommand(msg)) });
    this.timer = setInterval(() => void this.onTick(), this.options.tickMs);
    this.timer.unref();
  }

  /**
   * The tenant's directory, as it is now (at start, and when its admins change it): queues,
   * profiles and agents are set on the engine; a person no longer an agent keeps what they hold
   * but is refused as an agent from now on.
   */
  async applyDirectory(directory: DirectoryView): Promise<void> {
    this.directory.set(directory);
    await this.run('directory', (engine) => {
      for (const queue of directory.queues) engine.setQueue(queue);
      for (const profile of directory.profiles) engine.setProfile(profile);
      const nowMs = this.now();
      for (const person of directory.people) {
        if (person.roles.includes('agent') && person.profileId) engine.setAgent({ agentId: person.personId, profileId: person.profileId, skills: { ...person.skills } }, nowMs);
      }
      return engine.assign(nowMs);
    });
  }

  /** Stops answering (the lease is gone or the replica stops). Safe to repeat. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.subscription?.drain().catch(() => undefined);
  }

  /** The supervisors' view (and the metrics' source at each scrape). */
  queueView(): QueueView {
    return this.views.queueView();
  }

  private async onCommand(msg: Msg): Promise<void> {
    const started = performance.now();
    let kind = 'invalid';
    let reply: Reply;
    let headers: MsgHdrs | undefined;
    try {
      let command: Command;
      try {
        command = Command.decode(msg.data);
      } catch (error) {
        throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the command does not decode', { cause: error });
      }
      if (command.tenant !== this.tenant) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the command names another tenant');
      if (!command.command) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the command names no operation');
      kind = command.command.$case;
      const operation = command.command;
      const traced = this.spanOf(operation, msg.headers);
      reply = traced
        ? await inSpan(traced.name, traced.options, async (span) => {
            const answer = await this.commands.serve(operation).catch((error: unknown) => {
              const failure = this.failure(error);
              markFailed(span, new GatewayError(GatewayError.isCode(failure.code) ? failure.code : ErrorCode.INTERNAL, failure.message));
              return { result: { $case: 'error', value: failure } } satisfies Reply;
            });
            if (answer.result?.$case === 'contact') span.setAttribute('gateway.contact_id', answer.result.value.contactId);
            // The caller's next steps (the agent's join token) belong to the contact's trace too.
            headers = natsHeadersWithTrace();
            return answer;
          })
        : await this.commands.serve(operation);
    } catch (error) {
      const failure = this.failure(error);
      reply = { result: { $case: 'error', value: failure } };
    }
    this.observer?.command(kind, reply.result?.$case === 'error' ? reply.result.value.code : 'OK', performance.now() - started);
    if (msg.reply) msg.respond(Reply.encode(reply).finish(), headers ? { headers } : undefined);
  }

  /**
   * The span of a command in its contact's trace (docs/observability.md): a request for support
   * begins the trace (continuing the caller's), an accept continues the trace kept with the
   * contact (linked to the caller's). Other commands (presence every few seconds, statuses) make
   * no span of their own.
   */
  private spanOf(command: NonNullable<Command['command']>, headers: MsgHdrs | undefined): { name: string; options: Parameters<typeof inSpan>[1] } | undefined {
    if (command.$case === 'requestSupport') {
      const parent = contextFromNatsHeaders(headers);
      const attributes = {
        'gateway.tenant': this.tenant,
        'gateway.queue_id': id.safeParse(command.value.queueId).success ? command.value.queueId : 'invalid',
        'gateway.channel': channelNames[command.value.channel] ?? 'unknown',
      };
      return { name: 'gateway.routing.v1.Routing/requestSupport', options: { kind: SpanKind.SERVER, ...(parent ? { parent } : { root: true }), attributes } };
    }
    if (command.$case === 'accept') {
      const contact = this.engine.contacts.get(command.value.contactId);
      const parent = contextFromTraceparent(contact?.about?.traceparent);
      if (!contact || !parent) return undefined;
      return { name: 'gateway.routing.v1.Routing/accept', options: { kind: SpanKind.SERVER, parent, links: linksFromNatsHeaders(headers), attributes: contactAttributes(this.tenant, contact) } };
    }
    return undefined;
  }

  private failure(error: unknown): { code: string; message: string } {
    if (error instanceof RoutingRefusal) return { code: error.code === 'NO_CAPACITY' ? ErrorCode.LIMIT_EXCEEDED : error.code, message: error.message };
    const gatewayError = GatewayError.from(error);
    if (gatewayError.code === ErrorCode.INTERNAL) this.log.error({ tenant: this.tenant, err: error }, 'routing command failed');
    return { code: gatewayError.code, message: gatewayError.code === ErrorCode.INTERNAL ? 'routing failed; try again' : gatewayError.message };
  }

  private async onTick(): Promise<void> {
    // A tick that outlasts the interval is not joined by the next one: they would do its work twice.
    if (this.closed || this.ticking) return;
    this.ticking = true;
    const nowMs = this.now();
    try {
      // Apps gone quiet: agents go away (their offer moves on), then offline; end users leave the queue.
      for (const agent of this.engine.agents.values()) {
        if (agent.status === 'offline') continue;
        if (!agent.beforeDisconnect && this.presence.agentSilent(agent.agentId, this.options.presenceTimeoutMs, nowMs)) {
          await this.run('disconnect', (engine) => engine.disconnect(agent.agentId, nowMs));
        } else if (agent.beforeDisconnect && this.presence.agentSilent(agent.agentId, this.options.agentGraceMs, nowMs)) {
          await this.run('offline', (engine) => engine.setStatus(agent.agentId, 'offline', nowMs));
        }
      }
      for (const contact of [...this.engine.contacts.values()]) {
        if (contact.state === 'connected' || contact.callback) continue;
        if (this.presence.contactSilent(contact.contactId, this.options.endUserGraceMs, nowMs)) {
          await this.run('abandon', (engine) => engine.abandon(contact.contactId));
        }
      }
      await this.run('tick', (engine) => engine.tick(nowMs));
      this.teller.tellPositions();
      if (this.queueViewDirty && nowMs - this.lastQueueViewMs >= this.options.queueViewMs) {
        this.queueViewDirty = false;
        this.lastQueueViewMs = nowMs;
        this.teller.tellSupervisors(this.views.queueView());
      }
    } catch (error) {
      if (!(error instanceof RoutingRefusal)) this.log.warn({ tenant: this.tenant, err: error }, 'routing tick failed; next tick tries again');
    } finally {
      this.ticking = false;
    }
  }

  /** Runs an operation through the owner (stored before it counts), then tells everyone concerned. */
  private async run(kind: string, operation: (engine: RoutingEngine) => RoutingEvent[]): Promise<void> {
    let events: RoutingEvent[];
    try {
      events = await this.owner.run((engine) => {
        const decided = operation(engine);
        for (const event of decided) if (event.type === 'handed_over') holdPartRecord(engine, event.agentId, event.contact, this.now());
        return decided;
      });
    } catch (error) {
      if (this.owner.trusted) await this.teller.tellAfterReload();
      throw error;
    }
    if (events.length > 0) this.queueViewDirty = true;
    const nowMs = this.now();
    for (const event of events) {
      const contact = event.type === 'ended' ? event.contact : 'contactId' in event ? this.engine.contacts.get(event.contactId) : undefined;
      this.observer?.event(event, nowMs, contact);
      this.statistics.record(event, contact, nowMs, this.engine);
      this.teller.traceOffer(event, contact, nowMs);
      if (event.type === 'ended') this.presence.forgetContact(event.contactId);
      await this.teller.tell(event, contact);
      if (event.type === 'ended' && event.reason === 'abandoned') await this.sendRecord(contactRecordOf(this.tenant, pendingRecordOf(event.contact, nowMs), 'abandoned'));
    }
    if (kind !== 'tick' && events.length > 0) this.teller.tellPositions();
  }

  /** Sends a contact's record, retried a few times; one that cannot be sent is logged (by id only). */
  private async sendRecord(record: ContactRecord): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await publishContactRecord(this.nc, record);
        return;
      } catch (error) {
        if (attempt >= 3 || this.closed) {
          this.log.error({ tenant: this.tenant, contactId: record.contactId, err: error }, "a contact's record could not be sent");
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }
}
