import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '@gateway/common';
import { ByteCursor, rangeOf, type StreamedBody } from './streaming.js';
import { contactMetadataOf, type Delivery, type Destination, type DestinationDeps } from './types.js';
import { isSecureOrLocal, parseUrl } from './urls.js';
import { ZendeskApi, ZendeskHttpError, errorCode, type ZendeskApiOptions } from './zendeskApi.js';
import { commentBody, contactCommentBody, contactTags, fileNameOf, partName, partsOf, type FilePlan } from './zendeskTickets.js';

export const zendeskConfigSchema = z.object({
  /** The account's address, e.g. https://acme.zendesk.com (http only for a server on this host). */
  subdomainUrl: z
    .url()
    .refine((value) => {
      const url = parseUrl(value);
      return url !== undefined && isSecureOrLocal(url) && url.pathname === '/' && !url.search && !url.hash && !url.username;
    }, 'must be an https:// origin such as https://acme.zendesk.com, without a path')
    .transform((value) => new URL(value).origin),
  /** The agent or admin the API token belongs to. */
  email: z.email(),
});
export const zendeskSecretsSchema = z.object({ apiToken: z.string().min(1) });

export type ZendeskConfig = z.infer<typeof zendeskConfigSchema>;
export type ZendeskSecrets = z.infer<typeof zendeskSecretsSchema>;

/** Limits of the client, not of the tenant's settings: Zendesk's own, lowered in tests. */
export interface ZendeskOptions extends ZendeskApiOptions {
  /** "Upload Files": 50 MB per file; larger artifacts are sent as parts of at most this. */
  maxUploadBytes: number;
  uploadTimeoutMs: number;
}

export const defaultZendeskOptions: ZendeskOptions = {
  maxUploadBytes: 50_000_000,
  maxRetryAfterMs: 10_000,
  maxRateLimitRetries: 3,
  requestTimeoutMs: 30_000,
  uploadTimeoutMs: 300_000,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface ZendeskAttachment {
  id: number;
  file_name: string;
  size: number;
}

/**
 * The audit a Create or Update Ticket answers with (Ticket Audits): its "Comment" event lists the
 * attachments the comment was saved with. Checked as it comes; anything else in it is ignored.
 */
const auditSchema = z.object({
  events: z.array(
    z.object({
      type: z.string(),
      attachments: z.array(z.object({ id: z.number(), file_name: z.string(), size: z.number() })).optional(),
    }),
  ),
});

/** The files of the comment an audit records, or undefined when the answer carries no audit to tell. */
function auditedFiles(audit: unknown): Map<string, ZendeskAttachment> | undefined {
  const parsed = auditSchema.safeParse(audit);
  if (!parsed.success) return undefined;
  const comment = parsed.data.events.find((event) => event.type === 'Comment');
  if (!comment) return undefined;
  return new Map((comment.attachments ?? []).map((a) => [a.file_name, a]));
}

/** An upload token and the sizes of the files read for it, by file name. */
interface Uploaded {
  token: string | undefined;
  sizes: Map<string, number>;
}

/**
 * Zendesk Support (API v2, API token auth). Each delivery becomes one ticket, found again by its
 * `external_id` (the delivery id), requested by the end user (found by the customer's external
 * id, created as an end user if missing, the id cached in the ContactMap); the artifacts are
 * uploaded under one upload token and attached to one private comment. Artifacts over
 * `maxUploadBytes` go as `<name>.part1ofN` … `<name>.partNofN`, which concatenate back in order.
 *
 * Idempotency (`external_id` is not unique, so it alone cannot keep a second ticket out):
 * - the ticket is created with its comment and uploads in one request, so a ticket we made always
 *   carries its files unless Zendesk dropped them;
 * - every creation carries an `Idempotency-Key` derived from the delivery id, the same for every
 *   attempt and replica; for the key's lifetime (two hours) Zendesk makes at most one ticket under
 *   it: the same request again gets the first one's answer, another payload under the key (a
 *   retry whose uploads got other tokens) is refused, and then the ticket is looked up and
 *   completed as below; a request sent while another with the key is still being processed gets
 *   an answer the documentation does not give, taken as a failure of the attempt, whose retry
 *   looks the ticket up;
 * - a first attempt goes straight to the creation, its key answering whether a ticket exists;
 *   a retry (or an attempt of unknown number) first lists tickets by external_id, since an
 *   earlier attempt's key may have expired (a long outage): if one exists it only uploads the
 *   files no comment of the ticket carries yet (by file name, names being derived from artifact
 *   ids);
 * - uploads are never retried inside one attempt except after a 429 (which Zendesk did not
 *   process): an upload whose outcome is unknown is abandoned with its token, and the token's
 *   files, never attached, are deleted by Zendesk when it expires;
 * - deliver() returns only once Zendesk shows every file on the ticket, so our copies are deleted
 *   only once Zendesk has them: by the audit a Create or Update Ticket answers with (the comment
 *   event and the attachments it was saved with; a repeated creation gets the first one's), or,
 *   when there is no such audit or a redelivery changed nothing, by reading the ticket's comments
 *   back.
 * A contact-center contact's record is a ticket of its own, without files: its private comment
 * gives the facts and the agent's notes, its tags the outcome and the disposition.
 *
 * Two replicas handling the same delivery at once (possible only once JetStream's ack wait has
 * passed) make one ticket within the key's lifetime. Past it, two tickets remain possible for
 * two replicas racing on retries, or for a duplicate event delivered as a first attempt more
 * than two hours after the first one (it does not look up); nothing in Zendesk's API prevents it.
 */
export class ZendeskDestination implements Destination {
  private readonly api: ZendeskApi;
  private readonly options: ZendeskOptions;

  constructor(
    config: ZendeskConfig,
    secrets: ZendeskSecrets,
    private readonly deps: Pick<DestinationDeps, 'contacts' | 'log' | 'checkHost'> & Partial<Pick<DestinationDeps, 'connections'>>,
    options: Partial<ZendeskOptions> = {},
  ) {
    this.options = { ...defaultZendeskOptions, ...options };
    this.api = new ZendeskApi(config, secrets, deps, this.options);
  }

  /** "Show Self": Zendesk answers 200 with an anonymous user (id null) when the credentials are wrong. */
  async test(): Promise<void> {
    const { user } = await this.api.request<{ user?: { id: number | null; role?: string } }>('checking the credentials', 'GET', '/api/v2/users/me.json');
    if (!user || user.id === null || user.id === undefined) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Zendesk did not accept the credentials (it answered as an anonymous user): check the email and API token');
    }
    if (user.role !== 'agent' && user.role !== 'admin') {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the Zendesk user must be an agent or an admin, not ${errorCode(user.role) ?? 'another role'}`);
    }
  }

  async deliver(delivery: Delivery): Promise<void> {
    const plans = delivery.artifacts.map((artifact) => ({ artifact, fileName: fileNameOf(artifact) }));
    // A retry looks for an earlier attempt's ticket first: that attempt's key may have expired.
    // A first attempt does not: its creation's key answers the same question without a request.
    const retried = (delivery.attempt ?? 2) > 1;
    const existing = retried ? await this.findTicket(delivery.deliveryId) : undefined;
    const created = existing === undefined ? await this.create(delivery, plans) : { existing };
    const ticketId = 'existing' in created ? created.existing : created.ticketId;
    let attached = 'existing' in created ? await this.complete(delivery, created.existing, plans) : created.attached;
    // Our copies are deleted once this returns: check that Zendesk holds every file, by the
    // audit of the comment that attached them (read back only when the answer had none).
    attached ??= await this.attachedFiles(ticketId);
    const absent = plans.filter((plan) => !isAttached(plan.fileName, attached));
    if (absent.length > 0) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Zendesk ticket ${ticketId} lacks ${absent.length} of ${plans.length} files after the delivery; will retry`);
    }
    this.deps.log.debug({ deliveryId: delivery.deliveryId, ticketId, files: plans.length }, 'delivered to Zendesk');
  }

  async close(): Promise<void> {
    // The requests keep no per-destination state to release.
  }

  /**
   * The ticket made under the delivery's idempotency key: created now, or, when Zendesk says the
   * key went with another payload (an earlier attempt's, whose uploads had other tokens), the
   * ticket that attempt made, to complete; this attempt's uploads are then left to expire.
   */
  private async create(delivery: Delivery, plans: FilePlan[]): Promise<{ ticketId: number; attached: Map<string, ZendeskAttachment> | undefined } | { existing: number }> {
    const key = idempotencyKeyOf(delivery.deliveryId);
    const found = await this.requester(delivery);
    let requesterId = found.requesterId;
    const sent = await this.upload(plans);
    try {
      return await this.createTicket(delivery, requesterId, sent, plans, key).catch(async (error: unknown) => {
        // A cached user deleted in Zendesk since: look the user up again, once.
        if (!(found.cached && error instanceof ZendeskHttpError && error.status === 422 && /requester/.test(error.message))) throw error;
        requesterId = (await this.requester(delivery, { skipCache: true })).requesterId;
        return this.createTicket(delivery, requesterId, sent, plans, key);
      });
    } catch (error) {
      if (!(error instanceof ZendeskHttpError && error.status === 400 && error.zendeskError === 'IdempotentRequestError')) throw error;
      const existing = await this.findTicket(delivery.deliveryId);
      if (existing !== undefined) return { existing };
      // The key's first use made no ticket that is listed: Zendesk may keep a failed answer
      // under the key too (its documentation does not say; the contract server does), such as
      // the refusal of the requester above, deleted since; or the ticket was deleted. Created
      // once without the key: later attempts find it by its external_id.
      this.deps.log.info({ deliveryId: delivery.deliveryId }, 'Zendesk idempotency key taken without a ticket; creating the ticket without it');
      return this.createTicket(delivery, requesterId, sent, plans, undefined);
    }
  }

  /**
   * Adds to an earlier attempt's ticket the files no comment of it carries yet, in one comment;
   * the ticket's files after that (by the update's audit), or undefined when the answer had none.
   */
  private async complete(delivery: Delivery, ticketId: number, plans: FilePlan[]): Promise<Map<string, ZendeskAttachment> | undefined> {
    const attached = await this.attachedFiles(ticketId);
    const missing = plans.filter((plan) => !isAttached(plan.fileName, attached));
    if (missing.length === 0) return attached;
    const sent = await this.upload(missing);
    const { audit } = await this.api.request<{ audit?: unknown }>('adding the comment', 'PUT', `/api/v2/tickets/${ticketId}.json`, {
      json: { ticket: { comment: { body: commentBody(delivery, missing, sent.sizes, this.options.maxUploadBytes, true), public: false, uploads: sent.token ? [sent.token] : [] } } },
    });
    const added = auditedFiles(audit);
    return added ? new Map([...attached, ...added]) : undefined;
  }

  /** "List Tickets" filtered by external_id: the ticket of an earlier attempt, if any. */
  private async findTicket(deliveryId: string): Promise<number | undefined> {
    const { tickets } = await this.api.request<{ tickets?: Array<{ id: number; external_id: string | null }> }>('looking for the ticket', 'GET', '/api/v2/tickets.json', {
      query: { external_id: deliveryId, per_page: '100' },
    });
    return tickets?.find((t) => t.external_id === deliveryId)?.id;
  }

  /**
   * The ticket's requester: the end user with the customer's external id. Found with "Search
   * Users" (external_id is exact and unique per account), else created as an end user named
   * neutrally; create_or_update is not used because it would overwrite the name (and role) of a
   * user the customer's agents already keep. Without an end user's external id the API user
   * (the agent of the token) is the requester.
   */
  private async requester(delivery: Delivery, { skipCache = false } = {}): Promise<{ requesterId: number | undefined; cached: boolean }> {
    const contact = delivery.contacts.find((c) => c.role === 'end_user' && c.externalId);
    if (!contact) return { requesterId: undefined, cached: false };
    if (!skipCache) {
      const cached = await this.deps.contacts.get(contact.externalId);
      if (cached && /^\d+$/.test(cached)) return { requesterId: Number(cached), cached: true };
    }
    const search = () =>
      this.api
        .request<{ users?: Array<{ id: number; external_id: string | null }> }>('looking up the end user', 'GET', '/api/v2/users/search.json', { query: { external_id: contact.externalId } })
        .then(({ users }) => users?.find((u) => u.external_id === contact.externalId)?.id);
    let id = await search();
    if (id === undefined) {
      try {
        const { user } = await this.api.request<{ user: { id: number } }>('creating the end user', 'POST', '/api/v2/users.json', {
          json: { user: { name: 'Gateway end user', external_id: contact.externalId, role: 'end-user' } },
        });
        id = user.id;
      } catch (error) {
        // Created meanwhile by another delivery: external_id is unique, so it is there now.
        if (!(error instanceof ZendeskHttpError && error.status === 422)) throw error;
        id = await search();
        if (id === undefined) throw error;
      }
    }
    await this.deps.contacts.set(contact.externalId, String(id));
    return { requesterId: id, cached: false };
  }

  /**
   * "Upload Files": every file (and part) under one token, one artifact at a time, each streamed
   * from the store in one pass: a part's body is the next bytes of the artifact. A part sent
   * again (after a 429) reads the artifact again up to where the part starts.
   */
  private async upload(plans: FilePlan[]): Promise<Uploaded> {
    let token: string | undefined;
    const sizes = new Map<string, number>();
    for (const plan of plans) {
      const content = await plan.artifact.open();
      sizes.set(plan.fileName, content.size);
      const parts = partsOf(content.size, this.options.maxUploadBytes);
      const cursor = new ByteCursor(content.chunks);
      try {
        for (const [index, [start, end]] of parts.entries()) {
          const split = parts.length > 1;
          let fresh = true;
          const body: StreamedBody = {
            length: end - start,
            open: () => {
              if (fresh) {
                fresh = false;
                return cursor.take(end - start);
              }
              return (async function* () {
                yield* rangeOf((await plan.artifact.open()).chunks, start, end - start);
              })();
            },
          };
          const { upload } = await this.api.request<{ upload: { token: string } }>('uploading a file', 'POST', '/api/v2/uploads.json', {
            query: { filename: split ? partName(plan.fileName, index, parts.length) : plan.fileName, ...(token ? { token } : {}) },
            body,
            // A part is not a playable file of the artifact's type; its name says how to rejoin it.
            contentType: split ? 'application/octet-stream' : plan.artifact.contentType || 'application/octet-stream',
            timeoutMs: this.options.uploadTimeoutMs,
          });
          token = upload.token;
          // The part may have been sent from a fresh read (after a 429): the shared read moves on past it.
          await cursor.skipTo(end);
        }
      } finally {
        await cursor.close();
      }
    }
    return { token, sizes };
  }

  /** The ticket's id, and the files its comment was saved with (by the answer's audit). */
  private async createTicket(
    delivery: Delivery,
    requesterId: number | undefined,
    sent: Uploaded,
    plans: FilePlan[],
    idempotencyKey: string | undefined,
  ): Promise<{ ticketId: number; attached: Map<string, ZendeskAttachment> | undefined }> {
    const { ticket, audit } = await this.api.request<{ ticket: { id: number }; audit?: unknown }>('creating the ticket', 'POST', '/api/v2/tickets.json', {
      ...(idempotencyKey ? { headers: { 'idempotency-key': idempotencyKey } } : {}),
      json: {
        ticket: {
          subject: delivery.kind === 'contact' ? `Gateway contact: queue ${contactMetadataOf(delivery).queueId}` : `Gateway ${delivery.kind}: room ${delivery.room}`,
          ...(requesterId !== undefined ? { requester_id: requesterId } : {}),
          external_id: delivery.deliveryId,
          comment: {
            body: delivery.kind === 'contact' ? contactCommentBody(delivery) : commentBody(delivery, plans, sent.sizes, this.options.maxUploadBytes, false),
            public: false,
            uploads: sent.token ? [sent.token] : [],
          },
          tags: ['gateway', `gateway_${delivery.kind}`, ...(delivery.kind === 'contact' ? contactTags(delivery) : [])],
        },
      },
    });
    return { ticketId: ticket.id, attached: auditedFiles(audit) };
  }

  /** Every file attached to the ticket's comments ("List Comments", offset pagination). */
  private async attachedFiles(ticketId: number): Promise<Map<string, ZendeskAttachment>> {
    const files = new Map<string, ZendeskAttachment>();
    let next: string | null = `/api/v2/tickets/${ticketId}/comments.json?per_page=100`;
    for (let page = 0; next && page < 100; page++) {
      const body: { comments?: Array<{ attachments?: ZendeskAttachment[] }>; next_page?: string | null } = await this.api.request('reading the ticket comments', 'GET', next);
      for (const comment of body.comments ?? []) for (const a of comment.attachments ?? []) files.set(a.file_name, a);
      // Follow next_page only on the account's own origin: the credentials go with it.
      next = body.next_page && new URL(body.next_page, this.api.origin).origin === this.api.origin ? body.next_page : null;
    }
    return files;
  }
}

/**
 * Create Ticket's Idempotency-Key for a delivery: the same for every attempt and replica. A hash
 * of the delivery id, so that its length and characters are the same whatever the id holds.
 */
export function idempotencyKeyOf(deliveryId: string): string {
  return `gateway-delivery-${createHash('sha256').update(deliveryId).digest('hex')}`;
}

/**
 * Whether a ticket's attachments already hold an artifact: its file, or all N parts of it for
 * one N. Parts go in one comment with the rest, so a partial set only happens if Zendesk dropped
 * files; then the whole set is sent again.
 */
function isAttached(fileName: string, attached: Map<string, ZendeskAttachment>): boolean {
  if (attached.has(fileName)) return true;
  const first = [...attached.keys()].find((name) => name.startsWith(`${fileName}.part1of`));
  const count = first ? Number(first.slice(`${fileName}.part1of`.length)) : NaN;
  if (!Number.isInteger(count) || count < 2) return false;
  for (let i = 0; i < count; i++) if (!attached.has(partName(fileName, i, count))) return false;
  return true;
}
