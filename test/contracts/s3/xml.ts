import { randomBytes } from 'node:crypto';
import type { S3Answer } from './request.js';

/** S3's XML: result bodies, and errors as S3 sends them (`<Error>` with Code, Message, Resource, RequestId, HostId). */

/** A refusal: its status and S3 error code, answered as an `<Error>` body. */
export class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const malformedXml = () => new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');

export function errorXml(error: S3Error, resource: string, requestId: string): string {
  return xml(
    `<Error><Code>${error.code}</Code><Message>${escape(error.message)}</Message><Resource>${escape(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>${randomBytes(24).toString('base64')}</HostId></Error>`,
  );
}

export function xmlAnswer(body: string, headers: Record<string, string> = {}): S3Answer {
  return { status: 200, headers: { 'content-type': 'application/xml', ...headers }, body: xml(body) };
}

function xml(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
}

export function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

export function unescape(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#34;/g, '"')
    .replace(/&amp;/g, '&');
}
