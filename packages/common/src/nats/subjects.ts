import { ErrorCode, GatewayError } from '../errors.js';

/**
 * Every NATS subject, KV bucket and stream name used by the platform lives here, so that a
 * tenant's traffic and data can always be found (the tenant is a subject token).
 */

/** Tenant and room names become subject tokens, so they are restricted to this alphabet. */
export const SUBJECT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

export function assertSubjectToken(kind: string, value: string): string {
  if (!SUBJECT_TOKEN.test(value)) throw new GatewayError(ErrorCode.BAD_REQUEST, `${kind} must be 1-64 letters, digits, _ or -`);
  return value;
}

export const subjects = {
  /** RoomEvent (gateway.events.v1) for one room. */
  roomEvents: (tenant: string, room: string) => `gateway.${tenant}.room.${room}.events`,
  /** SessionTakeover for the signaling replica that owned a participant's session. */
  sessionTakeover: (tenant: string, participantId: string) => `gateway.${tenant}.session.${participantId}.takeover`,
  /** SessionControl (the room API) for the signaling replica holding a participant's session; core request/reply. */
  sessionControl: (tenant: string, participantId: string) => `gateway.${tenant}.session.${participantId}.control`,
  /** RecordingReady (gateway.events.v1), on the recordings stream. */
  recordingReady: (tenant: string) => `gateway.${tenant}.recording.ready`,
  /** ChatSealed entries of a room's conversation, on the chat stream. */
  chat: (tenant: string, room: string) => `gateway.${tenant}.chat.${room}`,
  /** TranscriptReady (gateway.events.v1), on the transcripts stream. */
  transcriptReady: (tenant: string) => `gateway.${tenant}.transcript.ready`,
  /** AttachmentReady (gateway.events.v1), on the transcripts stream. */
  attachmentReady: (tenant: string) => `gateway.${tenant}.attachment.ready`,
  /** SessionEnded (gateway.events.v1), on the sessions stream. */
  sessionEnded: (tenant: string) => `gateway.${tenant}.session.ended`,
  /** ContactRecord (gateway.routing.v1): a contact-center contact's record, on the sessions stream. */
  contactEnded: (tenant: string) => `gateway.${tenant}.contact.ended`,
  /** Alerts for the tenant's operators (DeliveryExpired, ArtifactMissing), on the alerts stream. */
  alert: (tenant: string, kind: 'delivery_expired' | 'artifact_missing') => `gateway.${tenant}.alert.${kind}`,
  /** DataSubjectRequest from crm-sync to the signaling replicas (one answers), core request/reply. */
  dataSubjectRequest: (tenant: string) => `gateway.${tenant}.data_subject.request`,
  /** Webhook events (JSON, packages/common/src/webhooks/events.ts) for crm-sync to post, on the webhooks stream. */
  webhookEvent: (tenant: string) => `gateway.${tenant}.webhook.event`,
  /** One webhook event for one endpoint of the tenant, retried until posted, on the webhooks stream. */
  webhookDelivery: (tenant: string, webhookId: string) => `gateway.${tenant}.webhook.delivery.${webhookId}`,
  /** Routing Command (gateway.routing.v1) for the replica that owns the tenant's routing; core request/reply. */
  routingCommand: (tenant: string) => `gateway.${tenant}.routing.command`,
  /** AgentEvent (gateway.routing.v1) for one agent's app, from the tenant's routing owner. */
  routingAgent: (tenant: string, agentId: string) => `gateway.${tenant}.routing.agent.${agentId}`,
  /** ContactState (gateway.routing.v1) for one end user's app, from the tenant's routing owner. */
  routingContact: (tenant: string, contactId: string) => `gateway.${tenant}.routing.contact.${contactId}`,
  /** QueueView (gateway.routing.v1) for the tenant's supervisors, at most once a second. */
  routingQueues: (tenant: string) => `gateway.${tenant}.routing.queues`,
  /** Audit records (e.g. DataSubjectAudit), on the audit stream. */
  audit: (tenant: string, kind: 'data_subject' | 'tenant') => `gateway.${tenant}.audit.${kind}`,
} as const;

export const streams = {
  /** Finished recordings for crm-sync: `gateway.*.recording.ready`. */
  recordings: { name: 'GATEWAY_RECORDINGS', subjects: ['gateway.*.recording.ready'] },
  /** Rooms' chat, encrypted, until the conversation's transcript is stored: `gateway.*.chat.*`. */
  chat: { name: 'GATEWAY_CHAT', subjects: ['gateway.*.chat.*'] },
  /** Transcripts and attachments for crm-sync. */
  transcripts: { name: 'GATEWAY_TRANSCRIPTS', subjects: ['gateway.*.transcript.ready', 'gateway.*.attachment.ready'] },
  /** Ended sessions for crm-sync: `gateway.*.session.ended`. */
  // A session is announced again when its finisher died between announcing and clearing its
  // record (the sweep finishes it after SIGNALING_SESSION_FINISH_STALE_SECONDS): the duplicate
  // window, by session id, outlasts that.
  sessions: { name: 'GATEWAY_SESSIONS', subjects: ['gateway.*.session.ended', 'gateway.*.contact.ended'], duplicateWindowMs: 60 * 60_000 },
  /** Alerts for operators: `gateway.<tenant>.alert.<kind>`. */
  alerts: { name: 'GATEWAY_ALERTS', subjects: ['gateway.*.alert.*'] },
  /**
   * Webhook events and their deliveries to each endpoint: `gateway.<tenant>.webhook.event` and
   * `gateway.<tenant>.webhook.delivery.<webhookId>`. An event's id (its message id) is derived
   * from what it is about, so the window drops the same event announced twice.
   */
  webhooks: { name: 'GATEWAY_WEBHOOKS', subjects: ['gateway.*.webhook.event', 'gateway.*.webhook.delivery.*'], duplicateWindowMs: 60 * 60_000 },
  /** Audit records, kept: `gateway.<tenant>.audit.<kind>`. */
  audit: { name: 'GATEWAY_AUDIT', subjects: ['gateway.*.audit.*'] },
} as const;

export const buckets = {
  /** SFU node registry: key = node id, value = NodeInfo (gateway.sfu.v1), expires without heartbeat. */
  sfuNodes: 'gateway_sfu_nodes',
  /** Room placement: key = `${tenant}.${room}`, value = node id. */
  roomPlacement: 'gateway_room_placement',
  /** Live participants: key = `${tenant}.${room}.${participantId}`, written by the owning replica when the session changes. */
  participants: 'gateway_participants',
  /** Signaling replicas alive: key = replica id, JSON (rooms served per tenant), expires without heartbeat. */
  signalingReplicas: 'gateway_signaling_replicas',
  /** Encrypted recordings until delivered (Object Store, written by the recorder): name = `${tenant}.${artifactId}`. */
  artifacts: 'gateway_artifacts',
  /** Encrypted transcripts and attachments until delivered (Object Store, written by signaling), same names. */
  conversationArtifacts: 'gateway_conversation_artifacts',
  /** Encrypted segments of recordings in progress (Object Store, the recorder's own), same names. */
  recordingSegments: 'gateway_recording_segments',
  /**
   * Wrapped data keys of the artifacts: key = `${tenant}.${space}.${artifactId}` (the space names
   * the writer, so each service's permissions reach its own keys only); deleting one shreds its
   * artifact.
   */
  dataKeys: 'gateway_data_keys',
  /** Recording jobs: key = `${tenant}.${recordingId}`, value = Recording (gateway.recorder.v1). */
  recordings: 'gateway_recordings',
  /** Recorder node registry: key = node id, JSON, expires without heartbeat. */
  recorderNodes: 'gateway_recorder_nodes',
  /** The recording of a room: key = `${tenant}.${room}`, JSON { recordingId, nodeId, grpcAddress, state }. */
  roomRecordings: 'gateway_room_recordings',
  /** Data key of a room's conversation: key = `${tenant}.${room}`, value = ChatKeyRecord (gateway.events.v1). */
  chatKeys: 'gateway_chat_keys',
  /** Smart Actions: key = `${tenant}.${room}.${actionId}`, value = SmartAction (gateway.signaling.v1). */
  smartActions: 'gateway_smart_actions',
  /** WebAuthn device keys of end users: key = `${tenant}.${sha256(external id)}`, JSON list of credentials. */
  deviceKeys: 'gateway_device_keys',
  /** Device key registrations in progress: key = `${tenant}.${room}.${participantId}`, the challenge; expires. */
  webauthnChallenges: 'gateway_webauthn_challenges',
  /** Webhook endpoints of the tenants: key = `${tenant}.${webhookId}`, JSON with the signing secrets sealed. */
  webhooks: 'gateway_webhooks',
  /**
   * API keys of the tenants beside GATEWAY_TENANTS' (packages/common/src/tenants/apiKeys.ts):
   * key = `${tenant}.${keyId}`, JSON with the secret's hash and the secret sealed.
   */
  apiKeys: 'gateway_api_keys',
  /** crm-sync destinations of the tenants: key = `${tenant}.${name}`, JSON with sealed secrets. */
  connectors: 'gateway_connectors',
  /**
   * The session of a live room: key = `${tenant}.${room}`, value = RoomSessionRecord
   * (gateway.events.v1); a session being finished: key = `${tenant}.${room}.ending.${sessionId}`.
   */
  roomSessions: 'gateway_room_sessions',
  /**
   * Live sessions of each join token: key = `${tenant}.${tokenId}.${slot}`, JSON { participantId,
   * room, claimedAtMs }; a token holds at most its tenant's sessionsPerToken slots.
   */
  tokenSessions: 'gateway_token_sessions',
  /** An upload answering a Smart Action in progress: key = `${tenant}.${room}.${actionId}`, JSON { startedAtMs }; expires. */
  uploadLeases: 'gateway_upload_leases',
  /** CRM contact ids: key = `${tenant}.${connector}.${sha256(external id)}`, value = the CRM's id. */
  crmContacts: 'gateway_crm_contacts',
  /**
   * Destinations' confirmations of deliveries in progress: key = `${tenant}.${deliveryId}.${connector}`,
   * JSON; written by crm-sync before it purges, deleted once the event is settled.
   */
  crmConfirmations: 'gateway_crm_confirmations',
  /** Which routing replica decides for each tenant: key = tenant, JSON { replicaId, acquiredAtMs }; ends with the age limit unless refreshed. */
  routingLeases: 'gateway_routing_leases',
  /**
   * Routing state of the tenants: key = `${tenant}.agent.${agentId}` and `${tenant}.contact.${contactId}`,
   * JSON (services/routing/src/state/RoutingRecords.ts), each written with compare-and-set.
   */
  routingState: 'gateway_routing_state',
  /**
   * Tenants' routing directories (services/routing/src/directory): key = `${tenant}.${kind}.${id}`
   * (kind: people, teams, queues, profiles), JSON; `${tenant}.revision` changes with each write.
   */
  routingDirectory: 'gateway_routing_directory',
} as const;

export const kvKeys = {
  room: (tenant: string, room: string) => `${tenant}.${room}`,
  participant: (tenant: string, room: string, participantId: string) => `${tenant}.${room}.${participantId}`,
  participantsOfRoom: (tenant: string, room: string) => `${tenant}.${room}.*`,
  recording: (tenant: string, recordingId: string) => `${tenant}.${recordingId}`,
  smartAction: (tenant: string, room: string, actionId: string) => `${tenant}.${room}.${actionId}`,
  smartActionsOfRoom: (tenant: string, room: string) => `${tenant}.${room}.*`,
  endingRoomSession: (tenant: string, room: string, sessionId: string) => `${tenant}.${room}.ending.${sessionId}`,
  endingRoomSessions: '*.*.ending.*',
  roomSessionsOfTenant: (tenant: string) => `${tenant}.*`,
  endingRoomSessionsOfTenant: (tenant: string) => `${tenant}.*.ending.*`,
} as const;
