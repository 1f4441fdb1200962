import { contactMetadataOf, type Delivery, type DeliveryArtifact } from './types.js';

/**
 * What a Zendesk ticket of ours says: the files' names (stable, from the artifact ids, so that a
 * redelivery can tell which a ticket already holds), how a large file is split, and the private
 * comments' text (what the files are, never personal data beyond the references we hold).
 */

export interface FilePlan {
  artifact: DeliveryArtifact;
  fileName: string;
}

const extensions: Record<string, string> = {
  'application/json': '.json',
  'text/plain': '.txt',
  'text/vtt': '.vtt',
  'audio/ogg': '.ogg',
  'audio/opus': '.opus',
  'audio/mpeg': '.mp3',
  'audio/wav': '.wav',
  'audio/mp4': '.m4a',
  'video/webm': '.webm',
  'video/mp4': '.mp4',
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'image/webp': '.webp',
  'application/pdf': '.pdf',
};

/** A stable file name from the artifact id (safe characters) and its content type. */
export function fileNameOf(artifact: DeliveryArtifact): string {
  const base = artifact.artifactId.replace(/[^A-Za-z0-9._-]/g, '_');
  const extension = extensions[artifact.contentType.split(';')[0]!.trim().toLowerCase()] ?? '.bin';
  return base.toLowerCase().endsWith(extension) ? base : `${base}${extension}`;
}

export function partName(fileName: string, index: number, count: number): string {
  return `${fileName}.part${index + 1}of${count}`;
}

/** [start, end) byte ranges of at most `max` bytes; one range for an empty or small file. */
export function partsOf(size: number, max: number): Array<[number, number]> {
  if (size <= max) return [[0, size]];
  const ranges: Array<[number, number]> = [];
  for (let start = 0; start < size; start += max) ranges.push([start, Math.min(size, start + max)]);
  return ranges;
}

const utc = (ms: number) =>
  ms > 0
    ? new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC')
    : 'unknown';

/** The private comment: what the files are, never personal data beyond the references we hold. */
export function commentBody(delivery: Delivery, plans: FilePlan[], sizes: Map<string, number>, maxUploadBytes: number, retried: boolean): string {
  const lines = [`Gateway ${delivery.kind} of room ${delivery.room} (delivery ${delivery.deliveryId}), ${utc(delivery.startedAtMs)} to ${utc(delivery.endedAtMs)}.`];
  if (retried) lines.push('Files added by a retried delivery.');
  if (plans.length > 0) lines.push('', 'Files:');
  for (const { artifact, fileName } of plans) {
    const size = sizes.get(fileName) ?? artifact.sizeBytes;
    const parts = partsOf(size, maxUploadBytes).length;
    lines.push(`- ${fileName} (${artifact.kind}, ${artifact.contentType}, ${size} bytes)`);
    if (parts > 1) {
      lines.push(`  sent in ${parts} parts, ${partName(fileName, 0, parts)} to ${partName(fileName, parts - 1, parts)}: concatenate them in that order to get the file.`);
    }
  }
  const pauses = delivery.metadata.pauses;
  if (Array.isArray(pauses) && pauses.length > 0) {
    lines.push('', 'Recording paused (PCI):');
    for (const p of pauses as Array<{ startMs: number; endMs: number }>) lines.push(`- ${utc(p.startMs)} to ${utc(p.endMs)}`);
  }
  return lines.join('\n');
}

/** A contact's private comment: what routing recorded of it, the agent's notes last. */
export function contactCommentBody(delivery: Delivery): string {
  const c = contactMetadataOf(delivery);
  const lines = [
    `Gateway contact-center contact ${c.contactId} (${c.channel}, delivery ${delivery.deliveryId}).`,
    `Queue: ${c.queueId}${c.overflowedFrom.length > 0 ? ` (overflowed from ${c.overflowedFrom.join(', ')})` : ''}`,
    `Outcome: ${c.outcome}${c.callback ? ' (callback)' : ''}`,
    `Requested ${utc(c.requestedAtMs)}, connected ${c.connectedAtMs ? utc(c.connectedAtMs) : 'never'}, ended ${utc(c.endedAtMs)}.`,
    `Waited ${c.waitSeconds} s, handled ${c.handleSeconds} s${c.agentId ? ` by agent ${c.agentId}` : ''}.`,
  ];
  if (c.disposition) lines.push(`Disposition: ${c.disposition}`);
  if (c.transfers.length > 0) {
    lines.push('', 'Transfers:');
    for (const t of c.transfers) lines.push(`- ${utc(t.atMs)}: from agent ${t.fromAgentId} to ${t.toAgentId ? `agent ${t.toAgentId}` : `queue ${t.toQueueId}`} (${t.warm ? 'warm' : 'cold'})`);
  }
  if (c.notes) lines.push('', 'Notes:', c.notes);
  return lines.join('\n');
}

/**
 * A contact's tags: its outcome and its disposition, as tags are written (lowercase, no spaces:
 * Zendesk splits a tag at a space).
 */
export function contactTags(delivery: Delivery): string[] {
  const c = contactMetadataOf(delivery);
  const tags = [`gateway_outcome_${c.outcome}`];
  const disposition = c.disposition
    ?.toLowerCase()
    .replace(/[^\p{L}\p{N}_-]+/gu, '_')
    .replace(/^_+|_+$/g, '');
  if (disposition) tags.push(`gateway_disposition_${disposition}`);
  return tags;
}
