import { error, type Reply } from './reply.js';

/**
 * The org's data: the sObjects we model with their fields ("Object Reference for the Salesforce
 * Platform"), records in memory under faithful ids, and the field checks Salesforce makes on
 * create and update.
 */

export type SObjectRecord = Record<string, unknown> & { Id: string };

/** A field of the sObjects we model. */
interface FieldSpec {
  type: 'string' | 'textarea' | 'picklist' | 'reference' | 'int' | 'date' | 'base64';
  length?: number;
  values?: string[];
  required?: boolean;
  createOnly?: boolean;
}

export interface OrgSettings {
  /** The External ID field on Contact. */
  externalIdField: string;
  /** Unique external id fields reject duplicates (DUPLICATE_VALUE). */
  externalIdUnique: boolean;
  /** Largest base64-decoded VersionData in a JSON body. */
  jsonBlobLimitBytes: number;
}

export const keyPrefixes: Record<string, string> = { Contact: '003', Task: '00T', ContentVersion: '068', ContentDocument: '069' };

export class Org {
  readonly schemas: Record<string, Record<string, FieldSpec>>;
  private readonly records = new Map<string, Map<string, SObjectRecord>>();
  private nextId = 1;

  constructor(readonly settings: OrgSettings) {
    this.schemas = {
      Contact: { LastName: { type: 'string', length: 80, required: true }, FirstName: { type: 'string', length: 40 }, [settings.externalIdField]: { type: 'string', length: 255 } },
      Task: {
        Subject: { type: 'string', length: 255 },
        Status: { type: 'picklist', values: ['Not Started', 'In Progress', 'Completed', 'Waiting on someone else', 'Deferred'] },
        Priority: { type: 'picklist', values: ['High', 'Normal', 'Low'] },
        WhoId: { type: 'reference' },
        WhatId: { type: 'reference' },
        CallObject: { type: 'string', length: 255 },
        CallDurationInSeconds: { type: 'int' },
        CallType: { type: 'picklist', values: ['Internal', 'Inbound', 'Outbound'] },
        CallDisposition: { type: 'string', length: 255 },
        ActivityDate: { type: 'date' },
        Description: { type: 'textarea', length: 32_000 },
        TaskSubtype: { type: 'picklist', values: ['Task', 'Email', 'ListEmail', 'Cadence', 'Call', 'LinkedIn'], createOnly: true },
      },
      ContentVersion: {
        Title: { type: 'string', length: 255 },
        PathOnClient: { type: 'string', length: 500, required: true },
        VersionData: { type: 'base64' },
        FirstPublishLocationId: { type: 'reference', createOnly: true },
        Description: { type: 'textarea', length: 1000 },
        ReasonForChange: { type: 'string', length: 1000 },
        ContentDocumentId: { type: 'reference' },
      },
    };
    for (const type of Object.keys(this.schemas)) this.records.set(type, new Map());
  }

  /** Records of a type we model, in insertion order. */
  list(type: string): SObjectRecord[] {
    return [...this.records.get(type)!.values()];
  }

  /** Every record as it is now, for `restore` (a Composite request with allOrNone rolls back to it). */
  snapshot(): Map<string, Map<string, SObjectRecord>> {
    return new Map([...this.records].map(([type, records]) => [type, new Map([...records].map(([id, record]) => [id, { ...record }]))]));
  }

  restore(snapshot: Map<string, Map<string, SObjectRecord>>): void {
    for (const [type, records] of snapshot) this.records.set(type, records);
  }

  /** A new id with the key prefix of `type` (an sObject, or ContentDocument). */
  newId(type: string): string {
    return salesforceId(keyPrefixes[type]!, this.nextId++);
  }

  /** Stores a record under a new id. */
  insert(type: string, fields: Record<string, unknown>): string {
    const id = this.newId(type);
    this.records.get(type)!.set(id, { ...fields, Id: id });
    return id;
  }

  /** Field checks as Salesforce makes them; an error Reply or the record's fields. */
  validate(type: string, fields: Record<string, unknown>, mode: 'create' | 'update'): Record<string, unknown> | { reply: Reply } {
    const schema = this.schemas[type]!;
    const record: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(fields)) {
      const spec = schema[name];
      if (!spec) return { reply: error(400, 'INVALID_FIELD', `No such column '${name}' on sobject of type ${type}`, [name]) };
      if (mode === 'update' && spec.createOnly) return { reply: error(400, 'INVALID_FIELD_FOR_INSERT_UPDATE', `Unable to create/update fields: ${name}`, [name]) };
      if (value === null) continue;
      switch (spec.type) {
        case 'string':
        case 'textarea':
          if (typeof value !== 'string') return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of string for ${name}`, [name]) };
          if (spec.length && value.length > spec.length) return { reply: error(400, 'STRING_TOO_LONG', `${name}: data value too large`, [name]) };
          break;
        case 'picklist':
          if (typeof value !== 'string' || !spec.values!.includes(value))
            return { reply: error(400, 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST', `bad value for restricted picklist field: ${name}`, [name]) };
          break;
        case 'int':
          if (!Number.isInteger(value)) return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of int for ${name}`, [name]) };
          break;
        case 'date':
          if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of date for ${name}`, [name]) };
          break;
        case 'reference':
          if (typeof value !== 'string' || !/^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$/.test(value)) return { reply: error(400, 'MALFORMED_ID', `${name}: id value of incorrect type`, [name]) };
          if (!this.find(value)) return { reply: error(400, 'INVALID_CROSS_REFERENCE_KEY', `invalid cross reference id`, [name]) };
          break;
        case 'base64':
          break;
      }
      record[name] = value;
    }
    if (mode === 'create') {
      const missing = Object.entries(schema)
        .filter(([name, spec]) => spec.required && record[name] === undefined)
        .map(([name]) => name);
      if (missing.length) return { reply: error(400, 'REQUIRED_FIELD_MISSING', `Required fields are missing: [${missing.join(', ')}]`, missing) };
    }
    return record;
  }

  private find(id: string): SObjectRecord | undefined {
    for (const records of this.records.values()) for (const record of records.values()) if (sameId(record.Id, id)) return record;
    return undefined;
  }
}

/** A faithful 18-character id: key prefix, pod, counter, and the case-insensitivity suffix. */
function salesforceId(prefix: string, n: number): string {
  const id15 = `${prefix}5g00000${n.toString(36).toUpperCase().padStart(5, '0')}`.slice(0, 15);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) if (/[A-Z]/.test(id15[chunk * 5 + i]!)) bits |= 1 << i;
    suffix += alphabet[bits];
  }
  return id15 + suffix;
}

/** SOQL `=` on text is case-insensitive; on ids, 15- and 18-character forms are equal. */
export function equalsSoql(type: FieldSpec['type'], actual: unknown, value: string): boolean {
  if (typeof actual !== 'string') return false;
  if (type === 'reference') return sameId(actual, value);
  return actual.toLowerCase() === value.toLowerCase();
}

function sameId(a: string, b: string): boolean {
  return a.slice(0, 15) === b.slice(0, 15);
}
