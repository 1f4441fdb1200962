import { buckets, streams, subjects } from '../nats/subjects.js';
import { catalog, streamNameOf } from './catalog.js';

/**
 * Who may do what on NATS: one description, from which the server's authorization is rendered
 * for the tests, for `make up` and for the Kubernetes chart values (deploy/nats/values.yaml,
 * checked by a test), so the three cannot drift.
 *
 * Each service connects with its own nkey and may publish and subscribe to the subjects below
 * and nothing else: the core subjects it uses, and the JetStream API subjects of the streams,
 * buckets and object stores it uses, operation by operation. No service may create, update,
 * delete or purge a stream, a bucket or an object store (the admin identity provisions them,
 * catalog.ts); deleting messages or objects is granted only where the service's job is to.
 *
 * A new bucket a service uses is one line in its list, e.g. `kv.readWrite(buckets.x)`.
 */

export const natsIdentities = ['signaling', 'sfu', 'recorder', 'crm-sync', 'routing', 'residue', 'admin'] as const;
export type NatsIdentity = (typeof natsIdentities)[number];
/** The identities our services run as (admin is for provisioning, operators and tests). */
export type ServiceIdentity = Exclude<NatsIdentity, 'admin'>;

/** Each identity's replies come to its own inbox prefix, which no other identity may subscribe to. */
export const inboxPrefixOf = (identity: NatsIdentity) => `_INBOX_${identity}`;

export interface Grant {
  publish: string[];
  subscribe: string[];
}

const api = '$JS.API';
const pub = (...subjects: string[]): Grant => ({ publish: subjects, subscribe: [] });
const sub = (...subjects: string[]): Grant => ({ publish: [], subscribe: subjects });
const all = (...grants: Grant[]): Grant => ({ publish: grants.flatMap((g) => g.publish), subscribe: grants.flatMap((g) => g.subscribe) });

/** Core NATS subjects. */
export const core = {
  publish: (subject: string) => pub(subject),
  subscribe: (subject: string) => sub(subject),
  publishAndSubscribe: (subject: string) => all(pub(subject), sub(subject)),
};

/** A stream, by its definition in subjects.ts. */
type StreamRef = { name: string; subjects: readonly string[] };

export const stream = {
  /** Stream info (configuration and counts), what opening it checks. */
  info: (s: StreamRef | string) => pub(`${api}.STREAM.INFO.${typeof s === 'string' ? s : s.name}`),
  /** Publishing to the stream (a JetStream publish: the acknowledgement comes to the inbox). */
  publish: (s: StreamRef, subjects: readonly string[] = s.subjects) => all(stream.info(s), pub(...subjects)),
  /**
   * Reading with ordered consumers (created with their filter in the subject, then pulled from;
   * they expire by themselves) and message gets (readSubject).
   */
  read: (s: StreamRef) =>
    all(
      stream.info(s),
      // The client checks that its ordered consumer still exists (its info) when heartbeats are
      // missed, on a loaded server, and after a reconnect: refused, each check logged an error.
      pub(`${api}.STREAM.MSG.GET.${s.name}`, `${api}.CONSUMER.CREATE.${s.name}.>`, `${api}.CONSUMER.MSG.NEXT.${s.name}.*`, `${api}.CONSUMER.INFO.${s.name}.*`),
    ),
  /** A durable consumer of the given name: created (with its settings) by the service, then pulled from and acknowledged. */
  durable: (s: StreamRef, durable: string) =>
    all(
      stream.info(s),
      pub(`${api}.CONSUMER.CREATE.${s.name}.${durable}`, `${api}.CONSUMER.INFO.${s.name}.${durable}`, `${api}.CONSUMER.MSG.NEXT.${s.name}.${durable}`, `$JS.ACK.${s.name}.${durable}.>`),
    ),
  /** Erasing single messages. */
  deleteMessages: (s: StreamRef) => pub(`${api}.STREAM.MSG.DELETE.${s.name}`),
  /** Purging (JetStream cannot limit a purge to some subjects by permission: all of the stream). */
  purge: (s: StreamRef) => pub(`${api}.STREAM.PURGE.${s.name}`),
};

/** A KV bucket; `keys` narrows to a key pattern (tokens, with * and >). */
export const kv = {
  /** Open, get (direct get, by key: the key is in the subject), list keys (stream info). */
  read: (bucket: string, keys = '>') => pub(`${api}.STREAM.INFO.KV_${bucket}`, `${api}.DIRECT.GET.KV_${bucket}.$KV.${bucket}.${keys}`),
  /**
   * Put, create, update, delete and purge of a key are all publishes to its subject: a writer
   * of a key can also delete it.
   */
  write: (bucket: string, keys = '>') => pub(`$KV.${bucket}.${keys}`),
  readWrite: (bucket: string, keys = '>') => all(kv.read(bucket, keys), kv.write(bucket, keys)),
  /**
   * Reads and a watch: an ordered push consumer (created with its filter in the subject, its
   * info checked, its flow-control requests answered) delivering to the identity's inbox.
   */
  watch: (bucket: string) => all(kv.read(bucket), stream.read({ name: `KV_${bucket}`, subjects: [] }), pub(`$JS.FC.KV_${bucket}.>`)),
};

/**
 * An object store. Object names are base64 in one subject token, so permissions cannot tell one
 * object from another: a writer of a store may overwrite any of its objects, which is why each
 * writer has a store of its own (artifacts below).
 */
export const objects = {
  /**
   * Info and reads: an object's chunks come through a consumer filtered on its chunk subject,
   * with flow control (the reader answers the server's flow-control requests, or a large object
   * stalls).
   */
  read: (store: string) =>
    pub(
      `${api}.STREAM.INFO.OBJ_${store}`,
      `${api}.STREAM.MSG.GET.OBJ_${store}`,
      `${api}.CONSUMER.CREATE.OBJ_${store}.*.$O.${store}.C.*`,
      // A streamed read pulls an object's chunks a few at a time through an ordered consumer, then deletes it.
      `${api}.CONSUMER.MSG.NEXT.OBJ_${store}.*`,
      `${api}.CONSUMER.INFO.OBJ_${store}.*`,
      `${api}.CONSUMER.DELETE.OBJ_${store}.*`,
      `$JS.FC.OBJ_${store}.>`,
    ),
  /** Puts: chunks, then the object's meta record. */
  write: (store: string) => pub(`${api}.STREAM.INFO.OBJ_${store}`, `${api}.STREAM.MSG.GET.OBJ_${store}`, `$O.${store}.C.*`, `$O.${store}.M.*`),
  /** Deletes: the meta record marked deleted, then the chunks purged (a purge reaches the whole store). */
  delete: (store: string) => all(objects.write(store), pub(`${api}.STREAM.PURGE.OBJ_${store}`)),
};

/**
 * Encrypted artifacts (ArtifactStore): each space has its object store and its part of the data
 * keys bucket (`<tenant>.<space>.<artifact>`), so a service reaches only what it writes.
 */
export const artifactSpaces = {
  recordings: buckets.artifacts,
  conversations: buckets.conversationArtifacts,
  segments: buckets.recordingSegments,
} as const;
export type ArtifactSpace = keyof typeof artifactSpaces;

export const artifacts = {
  read: (space: ArtifactSpace) => all(objects.read(artifactSpaces[space]), kv.read(buckets.dataKeys, `*.${space}.>`)),
  write: (space: ArtifactSpace) => all(objects.write(artifactSpaces[space]), kv.readWrite(buckets.dataKeys, `*.${space}.>`)),
  delete: (space: ArtifactSpace) => all(objects.delete(artifactSpaces[space]), kv.readWrite(buckets.dataKeys, `*.${space}.>`)),
};

const roomEvents = 'gateway.*.room.*.events';
const dataSubjectRequests = 'gateway.*.data_subject.request';
const sessionTakeovers = 'gateway.*.session.*.takeover';
/** Routing commands to the replica that owns a tenant (it answers on the requester's inbox), and its events. */
const routingCommands = 'gateway.*.routing.command';
const routingEvents = ['gateway.*.routing.agent.*', 'gateway.*.routing.contact.*', 'gateway.*.routing.queues'];
/** The room API's commands to the replica holding a session (it answers on the requester's inbox). */
const sessionControls = 'gateway.*.session.*.control';

/** crm-sync's durable consumers (services/crm-sync/src/Deliveries.ts holds them by these names). */
export const crmSyncDurables = [
  { stream: streams.recordings, durable: 'crm-sync-recordings' },
  { stream: streams.transcripts, durable: 'crm-sync-transcripts' },
  { stream: streams.sessions, durable: 'crm-sync-sessions' },
] as const;

/** crm-sync's consumer of the webhooks stream, events and deliveries alike (services/crm-sync/src/webhooks/WebhookSender.ts). */
export const WEBHOOKS_DURABLE = 'crm-sync-webhooks';

/** Where the residue scanner removes what it finds (packages/common/src/residue/sweep.ts sweeps nothing else). */
export const residueSweeps = {
  kv: [buckets.roomPlacement, buckets.roomSessions, buckets.recordings, buckets.roomRecordings, buckets.chatKeys, buckets.smartActions, buckets.webauthnChallenges, buckets.dataKeys],
  objects: [buckets.artifacts, buckets.conversationArtifacts, buckets.recordingSegments],
  streams: [streams.recordings, streams.transcripts, streams.sessions, streams.chat],
} as const;

/**
 * Where the residue scanner purges delete markers (residue/markers.ts): every store a call, a
 * delivery or an erasure deletes from. A purge cannot be limited to some subjects by permission,
 * so in these stores the residue identity could remove live entries too, as it can already
 * delete any key of the stores it sweeps; the node registries and the tenants' connectors, whose
 * markers name no person, are left out.
 */
export const residueMarkerSweeps = {
  kv: [...residueSweeps.kv, buckets.participants, buckets.tokenSessions, buckets.uploadLeases, buckets.crmConfirmations, buckets.deviceKeys, buckets.crmContacts],
  objects: residueSweeps.objects,
} as const;

/** What each service may do. */
export const natsAccess: Record<ServiceIdentity, Grant[]> = {
  signaling: [
    core.publishAndSubscribe(roomEvents),
    core.publishAndSubscribe(sessionTakeovers),
    core.publishAndSubscribe(sessionControls),
    // The desk (SDK end users, agents, supervisors): commands to the tenant's routing owner, its events back.
    core.publish(routingCommands),
    ...routingEvents.map((subject) => core.subscribe(subject)),
    // Data-subject requests from crm-sync, answered on the requester's inbox (allow_responses below).
    core.subscribe(dataSubjectRequests),
    kv.read(buckets.sfuNodes),
    kv.read(buckets.recorderNodes),
    kv.read(buckets.roomRecordings),
    kv.readWrite(buckets.roomPlacement),
    kv.readWrite(buckets.participants),
    // A participant who left is purged by key (ParticipantStore.delete): a delete marker would stay for the bucket's TTL.
    stream.purge({ name: `KV_${buckets.participants}`, subjects: [`$KV.${buckets.participants}.>`] }),
    // Its own liveness key (nats-server 2.9 cannot scope a key per replica), and every replica's read.
    kv.readWrite(buckets.signalingReplicas),
    kv.readWrite(buckets.roomSessions),
    kv.readWrite(buckets.chatKeys),
    kv.readWrite(buckets.smartActions),
    // A room's index of its Smart Actions is purged with its last action (RoomIndex): no marker stays.
    stream.purge({ name: `KV_${buckets.smartActions}`, subjects: [`$KV.${buckets.smartActions}.>`] }),
    kv.readWrite(buckets.webauthnChallenges),
    kv.readWrite(buckets.tokenSessions),
    // Revoked tokens' and closed rooms' marks, kept from watches (JoinMarks) rather than read at each join.
    kv.watch(buckets.tokenSessions),
    kv.readWrite(buckets.uploadLeases),
    kv.readWrite(buckets.deviceKeys),
    // Tenants' API keys: HTTP Basic on the room API, and join tokens signed with them.
    kv.read(buckets.apiKeys),
    // Which tenants have webhook endpoints (keys only, watched: WebhookAudience); their events alone are published.
    kv.watch(buckets.webhooks),
    stream.publish(streams.chat),
    stream.read(streams.chat),
    // A redacted message is erased; an ended conversation's entries are purged.
    stream.deleteMessages(streams.chat),
    stream.purge(streams.chat),
    stream.publish(streams.transcripts),
    stream.publish(streams.sessions),
    stream.publish(streams.webhooks, [subjects.webhookEvent('*')]),
    artifacts.read('conversations'),
    // The losing copy of two uploads racing for one Smart Action is deleted at once.
    artifacts.delete('conversations'),
  ],
  sfu: [
    core.publish(roomEvents),
    // The registry: every SFU node writes its own key (nats-server 2.9 cannot scope a key per node, see docs/security.md).
    kv.readWrite(buckets.sfuNodes),
    // Taps go only to registered recorders' addresses.
    kv.read(buckets.recorderNodes),
  ],
  recorder: [
    core.publishAndSubscribe(roomEvents),
    kv.read(buckets.sfuNodes),
    kv.read(buckets.roomPlacement),
    kv.read(buckets.participants),
    kv.readWrite(buckets.recorderNodes),
    kv.readWrite(buckets.roomRecordings),
    kv.readWrite(buckets.recordings),
    stream.publish(streams.recordings),
    stream.publish(streams.webhooks, [subjects.webhookEvent('*')]),
    artifacts.write('recordings'),
    // Segments are the recorder's transient data: stored, read back for assembly, deleted.
    artifacts.read('segments'),
    artifacts.delete('segments'),
  ],
  'crm-sync': [
    ...crmSyncDurables.flatMap(({ stream: s, durable }) => [
      stream.durable(s, durable),
      // Data-subject requests read the pending events of a person; delivered events are erased.
      stream.read(s),
      stream.deleteMessages(s),
    ]),
    // Rectification republishes a pending event with its contact details corrected.
    ...crmSyncDurables.map(({ stream: s }) => stream.publish(s)),
    // Erasure and rectification reach live rooms through the signaling replicas (one answers).
    core.publish(dataSubjectRequests),
    stream.publish(streams.alerts),
    stream.publish(streams.audit),
    kv.readWrite(buckets.connectors),
    kv.readWrite(buckets.webhooks),
    // Which tenants have webhook endpoints (keys only, watched: WebhookAudience); a delivery's event is published for those alone.
    kv.watch(buckets.webhooks),
    // Tenants' API keys: managed through the admin API, which they authenticate too.
    kv.readWrite(buckets.apiKeys),
    // Webhooks: events fanned out to one delivery per endpoint, posted, then erased.
    stream.durable(streams.webhooks, WEBHOOKS_DURABLE),
    stream.publish(streams.webhooks),
    stream.deleteMessages(streams.webhooks),
    // An erasure reads the pending webhook events for those that name the person.
    stream.read(streams.webhooks),
    kv.readWrite(buckets.crmContacts),
    kv.readWrite(buckets.crmConfirmations),
    kv.readWrite(buckets.deviceKeys),
    // Only crm-sync deletes what was delivered (or expired, or erased on request).
    artifacts.read('recordings'),
    artifacts.delete('recordings'),
    artifacts.read('conversations'),
    artifacts.delete('conversations'),
    // The fill of every stream, bucket and object store (gateway_jetstream_stream_bytes).
    ...catalog.map((entry) => stream.info(streamNameOf(entry))),
  ],
  // The routing service: the owner of a tenant answers its commands (allow_responses) and tells
  // agents, end users and supervisors what changed.
  routing: [
    kv.read(buckets.apiKeys),
    // The tenants' directories, written through the routing admin API (services/routing/src/directory).
    kv.readWrite(buckets.routingDirectory),
    // The record of each contact, for crm-sync.
    stream.publish(streams.sessions, [subjects.contactEnded('*')]),
    core.subscribe(routingCommands),
    ...routingEvents.map((subject) => core.publish(subject)),
    kv.readWrite(buckets.routingLeases),
    kv.readWrite(buckets.routingState),
  ],
  // The residue scanner (packages/common/src/residue, docs/data-lifecycle.md): reads every stream,
  // bucket and object store through ordered consumers, and deletes only in the places where it
  // sweeps residue. A KV delete is a publish to the key's subject like a put, so permissions
  // cannot give it one without the other (docs/security.md).
  residue: [
    ...catalog.map((entry) => stream.read({ name: streamNameOf(entry), subjects: [] })),
    ...residueSweeps.kv.map((bucket) => kv.write(bucket)),
    ...residueSweeps.objects.map((store) => objects.delete(store)),
    ...residueSweeps.streams.map((s) => stream.deleteMessages(s)),
    ...residueMarkerSweeps.kv.map((bucket) => stream.purge({ name: `KV_${bucket}`, subjects: [] })),
  ],
};

export interface UserPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /**
   * May answer requests it received, once each, on their reply subject (the requester's inbox)
   * and on nothing else of that inbox.
   */
  allow_responses?: { max: number; expires: string };
}

/** Identities that answer core requests (data-subject requests, from crm-sync). */
const responders: ReadonlySet<ServiceIdentity> = new Set(['signaling', 'routing']);

/** An identity's permissions as nats-server takes them: its grants, its inbox, the JetStream account info. */
export function permissionsOf(identity: ServiceIdentity): UserPermissions {
  const grants = all(
    ...natsAccess[identity],
    // Every JetStream client asks for the account's info first.
    pub(`${api}.INFO`),
    sub(`${inboxPrefixOf(identity)}.>`),
  );
  const unique = (subjects: string[]) => [...new Set(subjects)].sort();
  return {
    publish: { allow: unique(grants.publish) },
    subscribe: { allow: unique(grants.subscribe) },
    ...(responders.has(identity) ? { allow_responses: { max: 1, expires: '1m' } } : {}),
  };
}

export interface AuthorizationUser {
  nkey: string;
  permissions?: UserPermissions;
}

/**
 * The server's `authorization` block: one nkey user per identity; the admin identity has no
 * limits. `nkeyOf` gives each identity's public key (or, for the chart, a variable the server
 * fills in from its environment).
 */
export function renderAuthorization(nkeyOf: (identity: NatsIdentity) => string): { users: AuthorizationUser[] } {
  return {
    users: natsIdentities.map((identity) => (identity === 'admin' ? { nkey: nkeyOf(identity) } : { nkey: nkeyOf(identity), permissions: permissionsOf(identity) })),
  };
}
