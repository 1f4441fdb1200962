import type http from 'node:http';
import { parseJsonObject } from '../http.js';
import { boundaryOf, MultipartError, parseMultipart } from './multipart.js';
import { equalsSoql, keyPrefixes, type Org } from './org.js';
import { error, type Reply } from './reply.js';
import { parseSoql, SoqlError } from './soql.js';

/** The REST API's data resources the adapter uses: Describe Global, Query, sObject create, upsert by external id. */

/** "Describe Global". */
export function describeGlobal(org: Org): Reply {
  return {
    status: 200,
    body: { encoding: 'UTF-8', maxBatchSize: 200, sobjects: Object.keys(org.schemas).map((name) => ({ name, createable: true, queryable: true, keyPrefix: keyPrefixes[name] })) },
  };
}

/** "Query" resource: {totalSize, done, records: [{attributes: {type, url}, ...fields}]}. */
export function query(org: Org, version: number, soql: string): Reply {
  let parsed;
  try {
    parsed = parseSoql(soql);
  } catch (cause) {
    return error(400, 'MALFORMED_QUERY', cause instanceof SoqlError ? cause.message : 'malformed query');
  }
  const schema = org.schemas[parsed.object];
  if (!schema) return error(400, 'INVALID_TYPE', `sObject type '${parsed.object}' is not supported.`);
  const queryable = new Set(['Id', ...Object.keys(schema).filter((f) => f !== 'VersionData')]);
  for (const field of [...parsed.fields, ...parsed.where.map((w) => w.field)]) {
    if (!queryable.has(field)) return error(400, 'INVALID_FIELD', `No such column '${field}' on entity '${parsed.object}'.`);
  }
  const matches = org.list(parsed.object).filter((record) => parsed.where.every(({ field, value }) => equalsSoql(schema[field]?.type ?? 'reference', record[field], value)));
  const records = matches.slice(0, parsed.limit ?? matches.length).map((record) => ({
    attributes: { type: parsed.object, url: `/services/data/v${version}.0/sobjects/${parsed.object}/${record.Id}` },
    ...Object.fromEntries(parsed.fields.map((f) => [f, record[f] ?? null])),
  }));
  return { status: 200, body: { totalSize: records.length, done: true, records } };
}

/** "sObject Basic Information" POST, and "Insert or Update Blob Data" for multipart ContentVersion. */
export function create(org: Org, type: string, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
  const contentType = headers['content-type'] ?? '';
  let fields: Record<string, unknown>;
  let blob: Buffer | undefined;
  const boundary = boundaryOf(contentType);
  if (boundary) {
    if (type !== 'ContentVersion') return error(400, 'INVALID_MULTIPART_REQUEST', 'This sObject has no blob field');
    let parts;
    try {
      parts = parseMultipart(body, boundary);
    } catch (cause) {
      return error(400, 'INVALID_MULTIPART_REQUEST', cause instanceof MultipartError ? cause.message : 'invalid multipart request');
    }
    // The first part holds the non-binary fields as JSON, the second the blob field's bytes.
    const [entity, binary] = parts;
    if (parts.length !== 2 || entity?.name !== 'entity_content' || !entity.contentType?.startsWith('application/json') || binary?.name !== 'VersionData') {
      return error(400, 'INVALID_MULTIPART_REQUEST', 'expecting an entity_content JSON part then a VersionData part');
    }
    const parsed = parseJsonObject(entity.data);
    if (!parsed) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in entity_content');
    fields = parsed;
    if ('VersionData' in fields) return error(400, 'INVALID_MULTIPART_REQUEST', 'VersionData belongs in its own part');
    blob = binary.data;
  } else if (contentType.startsWith('application/json')) {
    const parsed = parseJsonObject(body);
    if (!parsed) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in the request body');
    fields = parsed;
  } else {
    return error(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
  }
  const record = org.validate(type, fields, 'create');
  if ('reply' in record) return record.reply as Reply;
  if (type === 'ContentVersion') {
    if (blob === undefined) {
      if (typeof fields.VersionData !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(fields.VersionData))
        return error(400, 'REQUIRED_FIELD_MISSING', 'Required fields are missing: [VersionData]', ['VersionData']);
      blob = Buffer.from(fields.VersionData, 'base64');
      // The documented 37.5 MB base64 limit; which code Salesforce answers is not documented: this is our stand-in.
      if (blob.length > org.settings.jsonBlobLimitBytes) return error(400, 'STRING_TOO_LONG', 'VersionData too large for a JSON body: use multipart', ['VersionData']);
    }
    record.VersionData = blob;
    record.Title ??= String(record.PathOnClient).replace(/\.[^.]*$/, '');
    record.ContentDocumentId = org.newId('ContentDocument');
    record.IsLatest = true;
  }
  if (type === 'Contact' && org.settings.externalIdUnique) {
    const field = org.settings.externalIdField;
    if (record[field] !== undefined && org.list('Contact').some((c) => equalsSoql('string', c[field], String(record[field])))) {
      return error(400, 'DUPLICATE_VALUE', `duplicate value found: ${field} duplicates value on record with id: ...`, [field]);
    }
  }
  if (type === 'Task') {
    record.Status ??= 'Not Started';
    record.Priority ??= 'Normal';
  }
  const id = org.insert(type, record);
  return { status: 201, body: { id, success: true, errors: [] }, headers: { location: `/services/data/v60.0/sobjects/${type}/${id}` } };
}

/**
 * "Upsert Records Using sObject Rows by External ID": 201 when created; when matched, 200 with
 * {created: false} from API 46.0 on, 204 before; 300 when several records match; the external
 * id field and Id must not be in the body.
 */
export function upsert(org: Org, version: number, type: string, field: string, value: string, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
  if (!org.schemas[type]) return error(404, 'NOT_FOUND', 'The requested resource does not exist');
  if (field !== org.settings.externalIdField || type !== 'Contact') return error(404, 'NOT_FOUND', `Provided external ID field does not exist or is not accessible: ${field}`);
  if (!(headers['content-type'] ?? '').startsWith('application/json')) return error(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
  const parsed = parseJsonObject(body);
  if (!parsed) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in the request body');
  if ('Id' in parsed || field in parsed) return error(400, 'INVALID_FIELD', `Field ${field} is the external id and cannot be in the body`, [field]);
  const matches = org.list('Contact').filter((c) => equalsSoql('string', c[field], value));
  if (matches.length > 1) return { status: 300, body: matches.map((m) => `/services/data/v${version}.0/sobjects/${type}/${m.Id}`) };
  if (matches.length === 1) {
    const record = org.validate(type, parsed, 'update');
    if ('reply' in record) return record.reply as Reply;
    Object.assign(matches[0]!, record);
    return version >= 46 ? { status: 200, body: { id: matches[0]!.Id, success: true, errors: [], created: false } } : { status: 204 };
  }
  const record = org.validate(type, { ...parsed, [field]: value }, 'create');
  if ('reply' in record) return record.reply as Reply;
  const id = org.insert(type, record);
  return { status: 201, body: { id, success: true, errors: [], created: true } };
}
