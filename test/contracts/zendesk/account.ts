/**
 * The Zendesk account the contract server plays: its records as the API shows them, kept in
 * memory (attachments with their bytes), ids from one counter as in Zendesk, and a clock tests
 * can advance (upload expiry, rate-limit windows).
 */

export interface ZendeskUser {
  id: number;
  url: string;
  name: string;
  email: string | null;
  external_id: string | null;
  role: 'end-user' | 'agent' | 'admin';
  active: boolean;
  created_at: string;
  updated_at: string;
}

export interface ZendeskAttachment {
  id: number;
  url: string;
  file_name: string;
  content_url: string;
  mapped_content_url: string;
  content_type: string;
  size: number;
  width: null;
  height: null;
  inline: boolean;
  deleted: boolean;
  thumbnails: [];
}

/** An attachment as the account stores it: with the bytes, which the API serves at its content_url. */
export type StoredAttachment = ZendeskAttachment & { bytes: Buffer };

export interface ZendeskComment {
  id: number;
  type: 'Comment';
  author_id: number;
  body: string;
  html_body: string;
  plain_body: string;
  public: boolean;
  attachments: ZendeskAttachment[];
  audit_id: number;
  via: { channel: 'api' };
  created_at: string;
}

export interface ZendeskTicket {
  id: number;
  url: string;
  external_id: string | null;
  subject: string;
  raw_subject: string;
  description: string;
  status: 'new' | 'open' | 'pending' | 'solved' | 'closed';
  requester_id: number;
  submitter_id: number;
  assignee_id: null;
  tags: string[];
  via: { channel: 'api' };
  created_at: string;
  updated_at: string;
}

/** An upload token and the attachments it names, until a comment uses it or it expires. */
export interface Upload {
  token: string;
  expiresAtMs: number;
  attachmentIds: number[];
  used: boolean;
}

export class Account {
  readonly users = new Map<number, ZendeskUser>();
  readonly tickets = new Map<number, ZendeskTicket>();
  readonly comments = new Map<number, ZendeskComment[]>();
  readonly attachments = new Map<number, StoredAttachment>();
  readonly uploads = new Map<string, Upload>();
  /** The server's address, which record URLs start with; empty until it listens. */
  url = '';
  /** The API user the requests authenticate as. */
  readonly agent: ZendeskUser;
  private nextId = 1000;
  private clockOffsetMs = 0;

  constructor(agent: { email: string; role: ZendeskUser['role'] }) {
    this.agent = this.addUser({ name: 'API agent', email: agent.email, external_id: null, role: agent.role });
  }

  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  advanceClock(ms: number): void {
    this.clockOffsetMs += ms;
  }

  newId(): number {
    return this.nextId++;
  }

  addUser(fields: Pick<ZendeskUser, 'name' | 'email' | 'external_id' | 'role'>): ZendeskUser {
    const id = this.newId();
    const at = new Date(this.now()).toISOString();
    const user: ZendeskUser = { id, url: `${this.url}/api/v2/users/${id}.json`, active: true, created_at: at, updated_at: at, ...fields };
    this.users.set(id, user);
    return user;
  }
}
