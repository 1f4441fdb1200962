import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '@gateway/common';
import {
  COMPOSITE_MAX_QUERIES,
  COMPOSITE_MAX_SUBREQUESTS,
  SalesforceApi,
  errorCodeOf,
  failure,
  recordId,
  type SalesforceApiUsage,
  type SalesforceTokenCache,
  type Subrequest,
} from './salesforceApi.js';
import { base64Length, base64Of, bodyOf, type StreamedBody } from './streaming.js';
import { contactMetadataOf, type ArtifactContent, type Delivery, type DeliveryArtifact, type Destination, type DestinationDeps } from './types.js';
import { isSecureOrLocalUrl } from './urls.js';

/**
 * Salesforce over its REST API (Salesforce REST API Developer Guide). Each delivery becomes a
 * `Task` on the end user's `Contact` and one `ContentVersion` (a Salesforce File) per artifact,
 * published to that contact. Every write is preceded by a lookup of its idempotency key, so a
 * redelivery after a crash, a timeout or a lost response creates nothing twice:
 *   - Contact: the customer's external id field (`contactExternalIdField`), cached in the
 *     ContactMap;
 *   - Task: `CallObject` = the delivery id;
 * A contact-center contact's record is a Task of its own (a call for voice and video, with the
 * handle time, the disposition and the wrap-up notes), on the end user's Contact like the rest.
 *   - ContentVersion: `Title` ending with our artifact id, on the same `FirstPublishLocationId`.
 */

const MB = 1024 * 1024;
/** "Insert or Update Blob Data": a JSON body holds at most 37.5 MB of base64-encoded data. */
const JSON_BLOB_LIMIT_BYTES = 37.5 * MB;
/** Files up to this size go inline (base64) in the Composite request that makes the Task; larger ones are streamed, a request each. */
const COMPOSITE_INLINE_MAX_BYTES = 256 * 1024;
/** A Contact id starts with its key prefix 003; anything else in `crmContactId` belongs to another CRM. */
const CONTACT_ID = /^003[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?$/;
/** External id values sent in a URL path (upsert). Others (dots, slashes, quotes) take query + create. */
const PATH_SAFE_VALUE = /^[A-Za-z0-9_-]{1,255}$/;

/** HTTPS only; plain HTTP only to this machine (the contract server in tests). */
const acceptableOrigin = isSecureOrLocalUrl;

export const salesforceConfigSchema = z
  .object({
    /** The My Domain URL (client credentials) or login.salesforce.com / test.salesforce.com (JWT bearer). */
    loginUrl: z
      .url()
      .refine(acceptableOrigin, 'must be an https URL')
      .transform((u) => u.replace(/\/+$/, '')),
    authFlow: z.enum(['client_credentials', 'jwt_bearer']),
    /** The connected app's consumer key. */
    clientId: z.string().min(1).max(256),
    /** The integration user (JWT bearer only). */
    username: z.string().min(1).max(256).optional(),
    apiVersion: z
      .string()
      .regex(/^v\d{2,3}\.0$/)
      .default('v60.0'),
    /** An External ID field on Contact holding the customer's id of the end user. Interpolated into SOQL and URLs, hence the strict form. */
    contactExternalIdField: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_]{0,79}$/)
      .default('Gateway_External_Id__c'),
    /** Files up to this size go as JSON (base64); larger ones as multipart. */
    jsonUploadMaxBytes: z
      .number()
      .int()
      .positive()
      .max(JSON_BLOB_LIMIT_BYTES)
      .default(30 * MB),
    /** Per request; uploads get one more second per MB (1 MB/s) on top. */
    requestTimeoutMs: z.number().int().min(50).max(600_000).default(60_000),
  })
  .refine((c) => c.authFlow !== 'jwt_bearer' || c.username, { message: 'username is required for jwt_bearer', path: ['username'] });

export const salesforceSecretsSchema = z
  .object({
    /** The connected app's consumer secret (client credentials). */
    clientSecret: z.string().min(1).optional(),
    /** The private key whose certificate is on the connected app (JWT bearer): PKCS#8 or PKCS#1 PEM. */
    privateKeyPem: z
      .string()
      .regex(/-----BEGIN (?:RSA )?PRIVATE KEY-----/, 'must be a PEM private key')
      .optional(),
  })
  .refine((s) => s.clientSecret || s.privateKeyPem, { message: 'clientSecret (client_credentials) or privateKeyPem (jwt_bearer) is required' });

export type SalesforceConfig = z.infer<typeof salesforceConfigSchema>;
export type SalesforceSecrets = z.infer<typeof salesforceSecretsSchema>;

/** A SOQL string literal ("Quoted String Escape Sequences", SOQL and SOSL Reference). */
export function soqlString(value: string): string {
  const escapes: Record<string, string> = { '\\': '\\\\', "'": "\\'", '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
  return `'${value.replace(/[\\'"\n\r\t\b\f]/g, (c) => escapes[c]!)}'`;
}

const subjects: Record<Delivery['kind'], string> = {
  recording: 'Call recording',
  transcript: 'Chat transcript',
  attachment: 'Attachment',
  session: 'Support session',
  contact: 'Contact center contact',
};
/** Task.CallDisposition is a text field of 255 characters. */
const CALL_DISPOSITION_MAX = 255;
const extensions: Record<string, string> = {
  'audio/ogg': 'ogg',
  'audio/webm': 'webm',
  'audio/mpeg': 'mp3',
  'audio/wav': 'wav',
  'video/webm': 'webm',
  'video/mp4': 'mp4',
  'application/json': 'json',
  'text/plain': 'txt',
  'application/pdf': 'pdf',
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
};

/** A tenant's Salesforce org. */
export class SalesforceDestination implements Destination {
  private readonly api: SalesforceApi;

  constructor(
    private readonly config: SalesforceConfig,
    secrets: SalesforceSecrets,
    private readonly deps: Pick<DestinationDeps, 'contacts' | 'log' | 'checkHost'> & Partial<Pick<DestinationDeps, 'connections' | 'maxRequestTimeoutMs'>>,
    options: { tokens?: SalesforceTokenCache } = {},
  ) {
    this.api = new SalesforceApi(config, secrets, deps, options.tokens);
  }

  /** The last API usage Salesforce reported, for the caller's metrics. */
  get apiUsage(): SalesforceApiUsage | undefined {
    return this.api.usage;
  }

  async test(): Promise<void> {
    await this.api.readLimits();
  }

  /**
   * Two requests for a small delivery: one Composite request with every lookup (the Contact
   * unless known, the Task, the files), then one with what is missing (the Contact's upsert, the
   * Task, the files inline). What does not fit (more files than the lookups' share of the 5
   * queries, files over COMPOSITE_INLINE_MAX_BYTES, an external id that cannot be upserted) goes
   * the one-request-per-step way, each step found again by its lookup.
   */
  async deliver(delivery: Delivery): Promise<void> {
    // A Task has one WhoId and a file one FirstPublishLocationId: the first end user is the contact.
    const endUser = delivery.contacts.find((c) => c.role === 'end_user' && c.externalId);
    let contactId = !endUser ? undefined : CONTACT_ID.test(endUser.crmContactId) ? endUser.crmContactId : await this.deps.contacts.get(endUser.externalId);

    const lookups: Subrequest[] = [];
    const contactLookup = endUser && !contactId ? query('contact', 'contact lookup', this.contactLookup(endUser.externalId)) : undefined;
    if (contactLookup) lookups.push(contactLookup);
    const taskLookup = query('task', 'task lookup', `SELECT Id FROM Task WHERE CallObject = ${soqlString(delivery.deliveryId)} LIMIT 1`);
    lookups.push(taskLookup);
    // Looked up by Title (ours, unique), their parent compared here: the parent may not be known yet.
    const fileLookups = new Map<DeliveryArtifact, Subrequest>();
    for (const [index, artifact] of delivery.artifacts.slice(0, COMPOSITE_MAX_QUERIES - lookups.length).entries()) {
      fileLookups.set(artifact, query(`file${index}`, 'file lookup', `SELECT Id, FirstPublishLocationId FROM ContentVersion WHERE Title = ${soqlString(fileTitle(delivery, artifact))}`));
    }
    lookups.push(...fileLookups.values());
    const found = await this.api.composite(lookups);
    const records = (subrequest: Subrequest) => (SalesforceApi.settled(found, subrequest, lookups).body as { records?: Array<Record<string, unknown>> } | undefined)?.records ?? [];
    if (contactLookup && endUser) {
      contactId = recordIdOf(records(contactLookup)[0]);
      if (contactId) await this.deps.contacts.set(endUser.externalId, contactId);
    }
    const taskId = recordIdOf(records(taskLookup)[0]);
    const filesFound = new Map(
      [...fileLookups].map(([artifact, lookup]) => [
        artifact,
        records(lookup)
          .map((r) => r.FirstPublishLocationId)
          .filter((p): p is string => typeof p === 'string'),
      ]),
    );

    // An external id that cannot be upserted in one step (not path-safe; 204 without an id before API 46.0) is made the step-by-step way.
    if (endUser && !contactId && !(PATH_SAFE_VALUE.test(endUser.externalId) && apiVersionOf(this.config.apiVersion) >= 46)) contactId = await this.contactFor(endUser.externalId);
    const creating: Subrequest[] = [];
    const contactUpsert = endUser && !contactId ? this.contactUpsert(endUser.externalId) : undefined;
    if (contactUpsert) creating.push(contactUpsert);
    const contactRef = contactUpsert ? '@{contact.id}' : contactId;
    const taskCreate = taskId ? undefined : { referenceId: 'task', operation: 'task create', method: 'POST' as const, path: '/sobjects/Task', body: this.taskFields(delivery, contactRef) };
    if (taskCreate) creating.push(taskCreate);
    const parentRef = contactRef ?? taskId ?? '@{task.id}';
    // A parent known before this delivery may hold files of an earlier attempt; a new one holds none.
    const knownParent = contactUpsert ? undefined : (contactId ?? taskId);
    const stepByStep: DeliveryArtifact[] = [];
    const inline: Array<{ artifact: DeliveryArtifact; upload: Subrequest }> = [];
    let inlineBytes = 0;
    for (const artifact of delivery.artifacts) {
      const parents = filesFound.get(artifact);
      if (!parents) {
        stepByStep.push(artifact);
        continue;
      }
      if (knownParent && parents.some((p) => sameId(p, knownParent))) continue;
      if (artifact.sizeBytes > this.inlineMaxBytes() || creating.length >= COMPOSITE_MAX_SUBREQUESTS) {
        stepByStep.push(artifact);
        continue;
      }
      const content = await readWhole(artifact, this.inlineMaxBytes());
      if (!content) {
        stepByStep.push(artifact);
        continue;
      }
      inlineBytes += content.length;
      const upload = {
        referenceId: `upload${inline.length}`,
        operation: 'file upload',
        method: 'POST' as const,
        path: '/sobjects/ContentVersion',
        body: { ...this.fileFields(delivery, artifact, parentRef), VersionData: content.toString('base64') },
      };
      inline.push({ artifact, upload });
      creating.push(upload);
    }
    let createdContact: string | undefined;
    let createdTask: string | undefined;
    if (creating.length > 0) {
      // Uploads get one more millisecond per kilobyte: time for 1 MB/s.
      const made = await this.api.composite(creating, this.api.requestTimeoutMs + Math.floor(inlineBytes / 1000));
      if (contactUpsert && endUser) {
        const upserted = SalesforceApi.settled(made, contactUpsert, creating, [300]);
        if (upserted.status === 300)
          throw new GatewayError(ErrorCode.DESTINATION_FAILED, `several Salesforce Contacts have the same ${this.config.contactExternalIdField}`, { details: { httpStatus: 300 } });
        createdContact = recordId(upserted.body);
        if (!createdContact) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce upserted a Contact without returning its id');
        await this.deps.contacts.set(endUser.externalId, createdContact);
      }
      if (taskCreate) {
        createdTask = recordId(SalesforceApi.settled(made, taskCreate, creating).body);
        if (!createdTask) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce created a Task without returning its id');
      }
      for (const { upload } of inline) SalesforceApi.settled(made, upload, creating);
    }
    // Files go on the end user's contact; without one, on the Task, so they are never orphans.
    const parentId = (contactId ?? createdContact ?? taskId ?? createdTask)!;
    for (const artifact of stepByStep) await this.ensureFile(delivery, artifact, parentId, { lookedUp: fileLookups.has(artifact) });
  }

  async close(): Promise<void> {
    // The requests keep no per-destination state; the token stays cached for the next delivery.
  }

  /** The Contact of an end user: cached, else found by the external id field, else created. */
  private async contactFor(externalId: string): Promise<string> {
    const cached = await this.deps.contacts.get(externalId);
    if (cached) return cached;
    const lookup = this.contactLookup(externalId);
    let id = await this.api.queryId('contact lookup', lookup);
    if (!id) {
      id = PATH_SAFE_VALUE.test(externalId) ? await this.upsertContact(externalId) : await this.createContact(externalId);
      id ??= await this.api.queryId('contact lookup', lookup);
      if (!id) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce created a Contact that cannot be found by its external id');
    }
    await this.deps.contacts.set(externalId, id);
    return id;
  }

  /** Inline files are JSON uploads: within the connector's JSON upload size too. */
  private inlineMaxBytes(): number {
    return Math.min(COMPOSITE_INLINE_MAX_BYTES, this.config.jsonUploadMaxBytes);
  }

  private contactLookup(externalId: string): string {
    return `SELECT Id FROM Contact WHERE ${this.config.contactExternalIdField} = ${soqlString(externalId)} LIMIT 1`;
  }

  /** The upsert below as a Composite subrequest (API 46.0+: its answer holds the id, created or matched). */
  private contactUpsert(externalId: string): Subrequest {
    const field = this.config.contactExternalIdField;
    return { referenceId: 'contact', operation: 'contact upsert', method: 'PATCH', path: `/sobjects/Contact/${field}/${encodeURIComponent(externalId)}`, body: { LastName: 'Gateway end user' } };
  }

  /**
   * "Upsert Records Using sObject Rows by External ID": atomic, so two replicas creating the same
   * end user make one Contact. 201 created; 200 {created:false} (API 46.0+) or 204 (older)
   * when it matched, which only happens if it was created since our lookup.
   */
  private async upsertContact(externalId: string): Promise<string | undefined> {
    const field = this.config.contactExternalIdField;
    const response = await this.api.request({
      operation: 'contact upsert',
      method: 'PATCH',
      path: `/sobjects/Contact/${field}/${encodeURIComponent(externalId)}`,
      json: { LastName: 'Gateway end user' },
      accept: [300],
    });
    if (response.status === 300) throw new GatewayError(ErrorCode.DESTINATION_FAILED, `several Salesforce Contacts have the same ${field}`, { details: { httpStatus: 300 } });
    return recordId(response.body);
  }

  /** External ids that cannot go in a URL path: create with a POST (DUPLICATE_VALUE if a unique field was filled meanwhile). */
  private async createContact(externalId: string): Promise<string | undefined> {
    const response = await this.api.request({
      operation: 'contact create',
      method: 'POST',
      path: '/sobjects/Contact',
      json: { LastName: 'Gateway end user', [this.config.contactExternalIdField]: externalId },
      accept: [400],
    });
    if (response.status === 400) {
      const code = errorCodeOf(response.body);
      if (code === 'DUPLICATE_VALUE') return undefined;
      throw failure('contact create', 400, code);
    }
    return recordId(response.body);
  }

  /** The Task that logs the call or chat (`CallObject` = delivery id, its idempotency key); `contactId` may be a Composite reference. */
  private taskFields(delivery: Delivery, contactId: string | undefined): Record<string, unknown> {
    const task: Record<string, unknown> = {
      Subject: subjects[delivery.kind],
      Status: 'Completed',
      Priority: 'Normal',
      CallObject: delivery.deliveryId,
      ActivityDate: new Date(delivery.startedAtMs || Date.now()).toISOString().slice(0, 10),
      Description: `Delivered by Gateway (${delivery.kind} ${delivery.deliveryId}, ${delivery.artifacts.length} file(s)).`,
    };
    if (contactId) task.WhoId = contactId;
    if (delivery.kind === 'recording') {
      task.TaskSubtype = 'Call';
      if (delivery.endedAtMs > delivery.startedAtMs) task.CallDurationInSeconds = Math.round((delivery.endedAtMs - delivery.startedAtMs) / 1000);
    }
    if (delivery.kind === 'contact') Object.assign(task, contactTaskFields(delivery));
    return task;
  }

  /** A file's fields but its bytes; `parentId` may be a Composite reference. */
  private fileFields(delivery: Delivery, artifact: DeliveryArtifact, parentId: string): Record<string, unknown> {
    const pathOnClient = `${artifact.artifactId.replace(/[^A-Za-z0-9_.-]/g, '_')}.${extensions[artifact.contentType] ?? 'bin'}`;
    return { Title: fileTitle(delivery, artifact), PathOnClient: pathOnClient, FirstPublishLocationId: parentId, Description: `Gateway ${artifact.kind}, part ${artifact.part}` };
  }

  /**
   * One ContentVersion per artifact. Its Title ends with our artifact id (unique, ours, not
   * personal data) and it is published to `parentId`: the pair is looked up before uploading.
   * A custom field would need the customer to add it; Title and FirstPublishLocationId are
   * standard, filterable and set by us. (Someone renaming the file within the retry window is
   * the one way this can make a second copy.)
   */
  private async ensureFile(delivery: Delivery, artifact: DeliveryArtifact, parentId: string, { lookedUp }: { lookedUp: boolean }): Promise<void> {
    if (!lookedUp) {
      const title = fileTitle(delivery, artifact);
      const existing = await this.api.queryId('file lookup', `SELECT Id FROM ContentVersion WHERE Title = ${soqlString(title)} AND FirstPublishLocationId = ${soqlString(parentId)} LIMIT 1`);
      if (existing) return;
    }
    const content = await artifact.open();
    const fields = this.fileFields(delivery, artifact, parentId);
    const pathOnClient = String(fields.PathOnClient);
    // Uploads get one more millisecond per kilobyte: time for 1 MB/s.
    const timeoutMs = this.api.requestTimeoutMs + Math.floor(content.size / 1000);
    // The bytes are streamed into the body (a retry after a 401 reads the artifact again).
    let first: ArtifactContent | undefined = content;
    const chunks = async function* () {
      const source = first ?? (await artifact.open());
      first = undefined;
      yield* source.chunks;
    };
    if (content.size <= this.config.jsonUploadMaxBytes) {
      // {"Title":…,"VersionData":"<base64>"}: the JSON up to the value's opening quote, the base64 block by block, then the end.
      const head = JSON.stringify({ ...fields, VersionData: '' }).slice(0, -2);
      const body: StreamedBody = { length: Buffer.byteLength(head) + base64Length(content.size) + 2, open: () => bodyOf(head, base64Of(chunks()), '"}') };
      await this.api.request({ operation: 'file upload', method: 'POST', path: '/sobjects/ContentVersion', body, contentType: 'application/json', timeoutMs });
      return;
    }
    // "Insert or Update Blob Data": the fields as JSON first, then the bytes.
    const boundary = `gateway-${randomBytes(16).toString('hex')}`;
    const head =
      `--${boundary}\r\nContent-Disposition: form-data; name="entity_content"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(fields)}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="VersionData"; filename="${pathOnClient}"\r\nContent-Type: ${artifact.contentType.replace(/[^\w./+-]/g, '') || 'application/octet-stream'}\r\n\r\n`;
    const tail = `\r\n--${boundary}--\r\n`;
    const body: StreamedBody = { length: Buffer.byteLength(head) + content.size + Buffer.byteLength(tail), open: () => bodyOf(head, chunks(), tail) };
    await this.api.request({ operation: 'file upload', method: 'POST', path: '/sobjects/ContentVersion', body, contentType: `multipart/form-data; boundary="${boundary}"`, timeoutMs });
  }
}

/** A file's Title: ends with our artifact id (unique, ours, not personal data), its idempotency key with its parent. */
function fileTitle(delivery: Delivery, artifact: DeliveryArtifact): string {
  return `${subjects[delivery.kind]} ${artifact.artifactId}`;
}

const query = (referenceId: string, operation: string, soql: string): Subrequest => ({ referenceId, operation, method: 'GET', path: `/query?q=${encodeURIComponent(soql)}` });

const recordIdOf = (record: Record<string, unknown> | undefined) => recordId(record ? { id: record.Id } : undefined);

/** Salesforce ids compare case-sensitively on their 15 first characters (the 18-character form adds a case checksum). */
const sameId = (a: string, b: string) => a.slice(0, 15) === b.slice(0, 15);

const apiVersionOf = (version: string) => Number(/^v(\d+)/.exec(version)![1]);

/** An artifact's bytes whole, if it holds at most `maxBytes` (they go inline in a Composite request); its checks pass when the end is read. */
async function readWhole(artifact: DeliveryArtifact, maxBytes: number): Promise<Buffer | undefined> {
  const content = await artifact.open();
  if (content.size > maxBytes) return undefined;
  const parts: Buffer[] = [];
  for await (const chunk of content.chunks) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/**
 * A contact's Task fields: a call (inbound: the end user asked for it) for voice and video, with
 * the handle time and the disposition; the Description says the rest, the notes last.
 */
function contactTaskFields(delivery: Delivery): Record<string, unknown> {
  const c = contactMetadataOf(delivery);
  const utc = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : 'never');
  const lines = [
    `Contact center contact ${c.contactId} (${c.channel}), delivered by Gateway.`,
    `Queue: ${c.queueId}${c.overflowedFrom.length > 0 ? ` (overflowed from ${c.overflowedFrom.join(', ')})` : ''}`,
    `Outcome: ${c.outcome}${c.callback ? ' (callback)' : ''}`,
    `Requested: ${utc(c.requestedAtMs)}; connected: ${utc(c.connectedAtMs)}; ended: ${utc(c.endedAtMs)}`,
    `Wait: ${c.waitSeconds} s; handle: ${c.handleSeconds} s`,
    `Agent: ${c.agentId ?? 'none'}`,
  ];
  if (c.disposition) lines.push(`Disposition: ${c.disposition}`);
  if (c.transfers.length > 0) {
    lines.push('Transfers:');
    for (const t of c.transfers) lines.push(`- ${utc(t.atMs)}: from agent ${t.fromAgentId} to ${t.toAgentId ? `agent ${t.toAgentId}` : `queue ${t.toQueueId}`} (${t.warm ? 'warm' : 'cold'})`);
  }
  if (c.notes) lines.push('', 'Notes:', c.notes);
  const fields: Record<string, unknown> = {
    Description: lines.join('\n'),
    ActivityDate: new Date(c.requestedAtMs || Date.now()).toISOString().slice(0, 10),
  };
  if (c.channel !== 'chat') {
    fields.TaskSubtype = 'Call';
    fields.CallType = 'Inbound';
    fields.CallDurationInSeconds = c.handleSeconds;
  }
  if (c.disposition) fields.CallDisposition = c.disposition.slice(0, CALL_DISPOSITION_MAX);
  return fields;
}
