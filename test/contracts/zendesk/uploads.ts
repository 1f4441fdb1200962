import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { drain, readBody } from '../http.js';
import type { Account, StoredAttachment, Upload, ZendeskAttachment } from './account.js';
import { errorBody, notFound, type Reply } from './responses.js';

/** Files: "Upload Files" makes upload tokens, comments attach what a token names, and the bytes are served back at each attachment's content_url. */

/**
 * "Upload Files": `POST /api/v2/uploads?filename=&token=` with the raw bytes and their
 * Content-Type; 201 with the token (valid 60 minutes) and the attachment. Passing a previous
 * token adds the file to that upload. Over 50 MB: 413 (the documentation gives the limit but
 * not the status; a body over the limit is refused before it is stored).
 */
export async function upload(account: Account, query: URLSearchParams, req: http.IncomingMessage, maxUploadBytes: number): Promise<Reply> {
  const fileName = query.get('filename');
  if (!fileName) {
    await drain(req);
    return { status: 400, body: errorBody('InvalidParameter', 'filename is required') };
  }
  const bytes = await readBody(req, maxUploadBytes);
  if (!bytes) return { status: 413, body: errorBody('RequestEntityTooLarge', `Attachments are limited to ${maxUploadBytes} bytes`) };
  let upload: Upload | undefined;
  const token = query.get('token');
  if (token) {
    upload = account.uploads.get(token);
    if (!upload || upload.used || upload.expiresAtMs <= account.now()) return notFound();
  } else {
    upload = { token: randomBytes(12).toString('hex').slice(0, 25), expiresAtMs: account.now() + 60 * 60_000, attachmentIds: [], used: false };
    account.uploads.set(upload.token, upload);
  }
  const id = account.newId();
  const contentType = (req.headers['content-type'] ?? 'application/binary').split(';')[0]!.trim();
  const contentToken = randomBytes(12).toString('hex');
  const contentUrl = `${account.url}/attachments/token/${contentToken}/?name=${encodeURIComponent(fileName)}`;
  const attachment: ZendeskAttachment = {
    id,
    url: `${account.url}/api/v2/attachments/${id}.json`,
    file_name: fileName,
    content_url: contentUrl,
    mapped_content_url: contentUrl,
    content_type: contentType,
    size: bytes.length,
    width: null,
    height: null,
    inline: false,
    deleted: false,
    thumbnails: [],
  };
  account.attachments.set(id, { ...attachment, bytes });
  upload.attachmentIds.push(id);
  return {
    status: 201,
    body: {
      upload: {
        token: upload.token,
        expires_at: new Date(upload.expiresAtMs).toISOString(),
        attachment,
        attachments: upload.attachmentIds.map((a) => publicAttachment(account.attachments.get(a)!)),
      },
    },
  };
}

/**
 * The attachments an upload token names, consumed. "Attaching files": a token that expired (or
 * was already used) no longer names anything: its files are not attached, without an error.
 */
export function takeUploads(account: Account, tokens: unknown): ZendeskAttachment[] {
  if (!Array.isArray(tokens)) return [];
  return tokens.flatMap((token) => {
    const upload = typeof token === 'string' ? account.uploads.get(token) : undefined;
    if (!upload || upload.used || upload.expiresAtMs <= account.now()) return [];
    upload.used = true;
    return upload.attachmentIds.map((id) => publicAttachment(account.attachments.get(id)!));
  });
}

/** The bytes behind a content_url (`/attachments/token/<token>/`), with their content type. */
export function attachmentContent(account: Account, contentToken: string): Reply {
  const attachment = [...account.attachments.values()].find((a) => a.content_url.includes(`/token/${contentToken}/`));
  if (!attachment) return notFound();
  return { status: 200, body: attachment.bytes, headers: { 'content-type': attachment.content_type } };
}

function publicAttachment(a: StoredAttachment): ZendeskAttachment {
  const { bytes: _bytes, ...rest } = a;
  return rest;
}
