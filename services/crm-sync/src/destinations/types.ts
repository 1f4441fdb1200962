/** One artifact to hand over; its bytes are decrypted only when a destination reads them. */
export interface DeliveryArtifact {
  artifactId: string;
  /** "voice", "camera", "screen", "transcript", "photo", "screenshot". */
  kind: string;
  contentType: string;
  sizeBytes: number;
  part: number;
  read(): Promise<Buffer>;
}

/** A communication to deliver: a recording, a transcript or an attachment, with its contacts. */
export interface Delivery {
  /** Stable across retries and duplicates: the destination's idempotency key. */
  deliveryId: string;
  kind: 'recording' | 'transcript' | 'attachment';
  tenant: string;
  room: string;
  startedAtMs: number;
  endedAtMs: number;
  contacts: Array<{ participantId: string; role: string; externalId: string; crmContactId: string }>;
  artifacts: DeliveryArtifact[];
  /** What else the event says (no personal data beyond the contacts' references). */
  metadata: Record<string, unknown>;
}

/** A customer's system that takes deliveries. Deliveries must be idempotent. */
export interface Destination {
  /** Checks that the destination answers and accepts the credentials. */
  test(): Promise<void>;
  deliver(delivery: Delivery): Promise<void>;
  close(): Promise<void>;
}
