import type { Account, ZendeskComment, ZendeskTicket } from './account.js';
import { errorBody, notFound, page, type Reply, type ValidationDetails } from './responses.js';
import { takeUploads } from './uploads.js';

/** The ticket endpoints the adapter calls: List, Show, Create and Update Ticket, and List Comments. */

/** "List Tickets": `external_id` filters (external ids need not be unique). Deleted tickets are not listed. */
export function listTickets(account: Account, query: URLSearchParams): Reply {
  const externalId = query.get('external_id');
  const tickets = [...account.tickets.values()].filter((t) => externalId === null || t.external_id === externalId);
  return { status: 200, body: page('tickets', tickets, query, '/api/v2/tickets', account.url) };
}

export function listComments(account: Account, ticketId: number, query: URLSearchParams, path: string): Reply {
  const comments = account.comments.get(ticketId);
  if (!comments) return notFound();
  return { status: 200, body: page('comments', comments, query, path, account.url) };
}

/** "Create Ticket": a comment is mandatory; the requester must exist; 201 with the ticket and its Location. */
export function createTicket(account: Account, body: Record<string, unknown> | undefined): Reply {
  const input = body?.ticket as Record<string, unknown> | undefined;
  if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'ticket is required') };
  const comment = input.comment as Record<string, unknown> | undefined;
  const details: ValidationDetails = {};
  if (!comment || typeof comment !== 'object' || !String(comment.body ?? comment.html_body ?? '').trim()) details.description = [{ error: 'BlankValue', description: 'Description: cannot be blank' }];
  const requesterId = input.requester_id === undefined ? account.agent.id : Number(input.requester_id);
  if (!account.users.has(requesterId)) details.requester = [{ error: 'InvalidValue', description: `Requester ${String(input.requester_id)} is invalid` }];
  if (Object.keys(details).length > 0) return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', details) };
  const id = account.newId();
  const at = new Date(account.now()).toISOString();
  const subject = typeof input.subject === 'string' ? input.subject : '';
  const ticket: ZendeskTicket = {
    id,
    url: `${account.url}/api/v2/tickets/${id}.json`,
    external_id: input.external_id === undefined || input.external_id === null ? null : String(input.external_id),
    subject,
    raw_subject: subject,
    description: String(comment!.body ?? ''),
    status: 'new',
    requester_id: requesterId,
    submitter_id: account.agent.id,
    assignee_id: null,
    tags: Array.isArray(input.tags) ? input.tags.map(String) : [],
    via: { channel: 'api' },
    created_at: at,
    updated_at: at,
  };
  account.tickets.set(id, ticket);
  const added = addComment(account, ticket, comment!);
  return { status: 201, body: { ticket, audit: auditOf(account, ticket, added) }, headers: { location: ticket.url } };
}

/** "Update Ticket": adds a comment; a closed ticket cannot be updated (422). */
export function updateTicket(account: Account, ticket: ZendeskTicket, body: Record<string, unknown> | undefined): Reply {
  const input = body?.ticket as Record<string, unknown> | undefined;
  if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'ticket is required') };
  if (ticket.status === 'closed')
    return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', { status: [{ error: 'InvalidValue', description: 'Status: closed prevents ticket update' }] }) };
  const comment = input.comment as Record<string, unknown> | undefined;
  let added: ZendeskComment | undefined;
  if (comment && typeof comment === 'object') {
    added = addComment(account, ticket, comment);
    if (ticket.status === 'new') ticket.status = 'open';
  }
  ticket.updated_at = new Date(account.now()).toISOString();
  return { status: 200, body: { ticket, audit: auditOf(account, ticket, added) } };
}

/**
 * The audit a create or update answers with: its events, the comment added among them (as a
 * "Comment" event, with its attachments), as Zendesk's Ticket Audits describe.
 */
function auditOf(account: Account, ticket: ZendeskTicket, comment: ZendeskComment | undefined): Record<string, unknown> {
  const events = comment
    ? [
        {
          id: account.newId(),
          type: 'Comment',
          author_id: comment.author_id,
          body: comment.body,
          html_body: comment.html_body,
          plain_body: comment.plain_body,
          public: comment.public,
          attachments: comment.attachments,
          audit_id: comment.audit_id,
        },
      ]
    : [];
  return { id: comment?.audit_id ?? account.newId(), ticket_id: ticket.id, created_at: ticket.updated_at, author_id: account.agent.id, via: { channel: 'api' }, events };
}

function addComment(account: Account, ticket: ZendeskTicket, input: Record<string, unknown>): ZendeskComment {
  const body = String(input.body ?? input.html_body ?? '');
  const comment: ZendeskComment = {
    id: account.newId(),
    type: 'Comment',
    author_id: account.agent.id,
    body,
    html_body: `<div class="zd-comment"><p>${body.replace(/[<>&]/g, '')}</p></div>`,
    plain_body: body,
    public: input.public !== false,
    attachments: takeUploads(account, input.uploads),
    audit_id: account.newId(),
    via: { channel: 'api' },
    created_at: new Date(account.now()).toISOString(),
  };
  const list = account.comments.get(ticket.id) ?? [];
  list.push(comment);
  account.comments.set(ticket.id, list);
  return comment;
}
