import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { parse } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The OpenAPI documents of the HTTP APIs (docs/openapi/). */
export const specFiles = {
  signaling: path.join(root, 'docs/openapi/signaling.yaml'),
  crmSyncAdmin: path.join(root, 'docs/openapi/crm-sync-admin.yaml'),
  routingAdmin: path.join(root, 'docs/openapi/routing-admin.yaml'),
} as const;

type Json = Record<string, any>;

/** One HTTP exchange as a test saw it: the request sent and the answer read back. */
export interface Exchange {
  method: string;
  /** The request target: path and query. */
  target: string;
  /** The JSON body sent, if any (checked against the contract when the server accepted it). */
  requestBody?: unknown;
  status: number;
  headers: Headers;
  /** The answer's body: parsed JSON, raw text when it is not JSON, undefined when empty. */
  body: unknown;
}

export interface ContractAnswer {
  status: number;
  headers: Headers;
  body: any;
}

/**
 * Checks real requests and answers against an OpenAPI 3.1 document with Ajv (JSON Schema
 * 2020-12, the dialect of OpenAPI 3.1's schemas): the path and method are documented, the status
 * is (or a `default`), required headers are there, the body matches the documented schema (whose
 * objects are closed, so an undocumented field fails), and a request the server accepted matches
 * its documented parameters and body.
 */
export class OpenApiContract {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly routes: Array<{ template: string; pattern: RegExp; names: string[]; literal: number }>;

  private constructor(readonly spec: Json) {
    // The whole document under one id, so the schemas' `#/components/...` references resolve.
    this.ajv.addSchema({ ...spec, $id: 'contract' });
    this.routes = Object.keys(spec.paths)
      .map((template) => {
        const names: string[] = [];
        const source = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, name: string) => {
          names.push(name);
          return '([^/]+)';
        });
        return { template, pattern: new RegExp(`^${source}$`), names, literal: template.split('/').filter((s) => s && !s.startsWith('{')).length };
      })
      // The most literal template wins (/v1/data-subjects/export before a parameter).
      .sort((a, b) => b.literal - a.literal);
  }

  static load(file: string): OpenApiContract {
    return new OpenApiContract(parse(readFileSync(file, 'utf8')) as Json);
  }

  /** What in the exchange departs from the contract; empty when it conforms. */
  problems(exchange: Exchange): string[] {
    const url = new URL(exchange.target, 'http://contract');
    const what = `${exchange.method} ${url.pathname} → ${exchange.status}`;
    const route = this.routes.find((r) => r.pattern.test(url.pathname));
    if (!route) return [`${what}: the path is not in the contract`];
    const item = this.spec.paths[route.template] as Json;
    const operation = item[exchange.method.toLowerCase()] as Json | undefined;
    const problems: string[] = [];
    let responses: Json;
    if (operation) responses = operation.responses;
    else {
      // A method the resource does not take: refused as such, or (credentials checked first) as unauthenticated.
      const refusals: Json = { '405': this.spec.components?.responses?.MethodNotAllowed, '401': this.spec.components?.responses?.Unauthenticated };
      if (!refusals[String(exchange.status)]) return [`${what}: the method is not in the contract`];
      responses = { [String(exchange.status)]: refusals[String(exchange.status)] };
    }
    const documented = responses[String(exchange.status)] ?? responses.default;
    if (!documented) return [`${what}: the status is not documented`];
    const response = this.deref(documented);
    for (const [name, header] of Object.entries((response.headers ?? {}) as Json)) {
      if ((header as Json).required && !exchange.headers.has(name)) problems.push(`${what}: the ${name} header is missing`);
    }
    const json = response.content?.['application/json'];
    if (json) {
      const key = `response:${route.template}:${exchange.method}:${responses[String(exchange.status)] ? exchange.status : 'default'}`;
      problems.push(...this.check(key, json.schema, exchange.body, `${what}: the body`));
    } else if (!response.content && exchange.body !== undefined && exchange.body !== '') {
      problems.push(`${what}: a body came where none is documented`);
    }
    // A request the server accepted must be one the contract describes.
    if (operation && exchange.status >= 200 && exchange.status < 300) {
      const match = route.pattern.exec(url.pathname)!;
      const parameters = [...((item.parameters ?? []) as Json[]), ...((operation.parameters ?? []) as Json[])].map((p) => this.deref(p));
      route.names.forEach((name, i) => {
        const parameter = parameters.find((p) => p.in === 'path' && p.name === name);
        if (!parameter) problems.push(`${what}: the path parameter ${name} is not documented`);
        else problems.push(...this.check(`param:${route.template}:${name}`, parameter.schema, decodeURIComponent(match[i + 1]!), `${what}: the path parameter ${name}`));
      });
      for (const key of url.searchParams.keys()) {
        if (!parameters.some((p) => p.in === 'query' && p.name === key)) problems.push(`${what}: the query parameter ${key} is not documented`);
      }
      const body = operation.requestBody ? this.deref(operation.requestBody) : undefined;
      if (exchange.requestBody !== undefined) {
        const schema = body?.content?.['application/json']?.schema;
        if (!schema) problems.push(`${what}: a JSON body was accepted where none is documented`);
        else problems.push(...this.check(`request:${route.template}:${exchange.method}`, schema, exchange.requestBody, `${what}: the request body`));
      }
    }
    return problems;
  }

  /**
   * Sends a request with fetch and checks the exchange against the contract; a departure fails
   * the test that made it. `json` is sent as the JSON body (content type set).
   */
  async fetch(baseUrl: string, target: string, init: RequestInit & { json?: unknown } = {}): Promise<ContractAnswer> {
    const { json, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (json !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
    const response = await fetch(`${baseUrl}${target}`, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body, signal: rest.signal ?? AbortSignal.timeout(70_000) });
    const text = await response.text();
    let body: unknown;
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    const problems = this.problems({ method: rest.method ?? 'GET', target, requestBody: json, status: response.status, headers: response.headers, body });
    if (problems.length > 0) throw new Error(`the answer departs from the OpenAPI contract:\n  ${problems.join('\n  ')}\n  body: ${text.slice(0, 500)}`);
    return { status: response.status, headers: response.headers, body };
  }

  /** Checks an answer a test fetched itself (read from a clone, so the test can still read it); a departure fails the test. */
  async assertAnswer(method: string, target: string, response: Response): Promise<void> {
    const text = await response.clone().text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    const problems = this.problems({ method, target, status: response.status, headers: response.headers, body });
    if (problems.length > 0) throw new Error(`the answer departs from the OpenAPI contract:\n  ${problems.join('\n  ')}`);
  }

  /** Every object schema an answer can hold states whether it takes other fields (false, or true for a documented free-form map). */
  openResponseObjects(): string[] {
    const open: string[] = [];
    const seen = new Set<Json>();
    const walk = (schema: Json | undefined, where: string) => {
      if (!schema || typeof schema !== 'object' || seen.has(schema)) return;
      seen.add(schema);
      if (schema.$ref) return walk(this.deref(schema), schema.$ref);
      const isObject = schema.type === 'object' || schema.properties !== undefined;
      if (isObject && schema.additionalProperties === undefined) open.push(where);
      for (const [name, property] of Object.entries((schema.properties ?? {}) as Json)) walk(property as Json, `${where}.${name}`);
      if (schema.items) walk(schema.items, `${where}[]`);
      for (const key of ['anyOf', 'oneOf', 'allOf'] as const) for (const [i, part] of ((schema[key] ?? []) as Json[]).entries()) walk(part, `${where}.${key}[${i}]`);
    };
    for (const [template, item] of Object.entries(this.spec.paths as Json)) {
      for (const [method, operation] of Object.entries(item as Json)) {
        if (method === 'parameters') continue;
        for (const [status, response] of Object.entries(((operation as Json).responses ?? {}) as Json)) {
          for (const [type, content] of Object.entries((this.deref(response as Json).content ?? {}) as Json)) {
            if (type === 'application/json') walk((content as Json).schema, `${method.toUpperCase()} ${template} ${status}`);
          }
        }
      }
    }
    return open;
  }

  private check(key: string, schema: Json, value: unknown, what: string): string[] {
    let validate = this.compiled.get(key);
    if (!validate) {
      // References inside the document's schemas point at its root, registered as `contract`.
      validate = this.ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"$ref":"#/', '"$ref":"contract#/')) as Json);
      this.compiled.set(key, validate);
    }
    if (validate(value)) return [];
    return (validate.errors ?? []).map((e) => `${what}${e.instancePath} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
  }

  /** A `$ref` within the document, followed. */
  private deref(node: Json): Json {
    let current = node;
    for (let hops = 0; current?.$ref && hops < 10; hops++) {
      const parts = String(current.$ref).replace(/^#\//, '').split('/');
      current = parts.reduce<Json>((at, part) => at?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], this.spec);
    }
    return current;
  }
}
