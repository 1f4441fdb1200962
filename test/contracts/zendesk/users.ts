import type { Account, ZendeskUser } from './account.js';
import { errorBody, page, type Reply, type ValidationDetails } from './responses.js';

/** The users endpoints the adapter calls: Search Users and Create User. */

/** "Search Users": `external_id` matches exactly (case-sensitive); one of query or external_id is required. */
export function searchUsers(account: Account, query: URLSearchParams): Reply {
  const externalId = query.get('external_id');
  if (externalId === null && query.get('query') === null) return { status: 400, body: errorBody('InvalidParameter', 'query or external_id is required') };
  const users = [...account.users.values()].filter((u) => externalId !== null && u.external_id === externalId);
  return { status: 200, body: page('users', users, query, '/api/v2/users/search', account.url) };
}

/** "Create User": name is mandatory; external_id is unique in the account. */
export function createUser(account: Account, body: Record<string, unknown> | undefined): Reply {
  const input = body?.user as Record<string, unknown> | undefined;
  if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'user is required') };
  const details: ValidationDetails = {};
  const name = typeof input.name === 'string' ? input.name.trim() : '';
  if (!name) details.name = [{ error: 'BlankValue', description: 'Name: cannot be blank' }];
  const externalId = input.external_id === undefined || input.external_id === null ? null : String(input.external_id);
  if (externalId !== null && [...account.users.values()].some((u) => u.external_id === externalId)) {
    details.external_id = [{ error: 'DuplicateValue', description: `External ${externalId} has already been taken` }];
  }
  const role = input.role ?? 'end-user';
  if (role !== 'end-user' && role !== 'agent' && role !== 'admin') details.role = [{ error: 'InvalidValue', description: `Role ${String(role)} is invalid` }];
  if (Object.keys(details).length > 0) return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', details) };
  const user = account.addUser({ name, email: typeof input.email === 'string' ? input.email : null, external_id: externalId, role: role as ZendeskUser['role'] });
  return { status: 201, body: { user }, headers: { location: user.url } };
}
