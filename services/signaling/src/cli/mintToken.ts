/**
 * Mints a join token for a tenant configured in GATEWAY_TENANTS (the `demo` tenant by default)
 * and prints only the token, so it can be used as `TOKEN=$(npm run --silent token -- ...)`.
 */
import { parseArgs } from 'node:util';
import { readTenants } from '../config.js';
import { deskRoles, mintDeskToken, mintJoinToken, publishableSources, roles, type DeskRole, type GrantedSource, type Role } from '../auth/tokens.js';

const usage = `usage: npm run --silent token -- --tenant T --room R --identity I --role agent|end_user
       [--ttl 6h|30m|3600] [--sources camera,microphone,screen] [--no-publish] [--no-subscribe] [--can-record]
       [--preflight]  (a pre-call check: a room of its own, no contact record)
       npm run --silent token -- --desk --tenant T --identity I --role end_user|agent|supervisor [--name N] [--ttl 8h]
                      (a desk token: an end user asking for support, an agent, a supervisor; docs/routing.md)`;

function fail(message: string): never {
  process.stderr.write(`${message}\n${usage}\n`);
  process.exit(2);
}

function parseTtl(value: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(value);
  if (!match) fail(`--ttl must be a number of seconds or like 30m, 6h, 1d; got ${value}`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        tenant: { type: 'string' },
        room: { type: 'string' },
        identity: { type: 'string' },
        role: { type: 'string' },
        ttl: { type: 'string' },
        sources: { type: 'string' },
        'no-publish': { type: 'boolean' },
        'no-subscribe': { type: 'boolean' },
        'can-record': { type: 'boolean' },
        preflight: { type: 'boolean' },
        desk: { type: 'boolean' },
        name: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  const { tenant: tenantName, room, identity, role } = values;
  if (values.desk) return mintDesk(values);
  if (!tenantName || !room || !identity || !role) fail('--tenant, --room, --identity and --role are required');
  if (!roles.includes(role as Role)) fail(`--role must be one of ${roles.join(', ')}`);
  const sources = values.sources?.split(',').map((s) => s.trim()) as GrantedSource[] | undefined;
  for (const source of sources ?? []) if (!publishableSources.includes(source)) fail(`unknown source ${source}`);

  let tenants;
  try {
    tenants = readTenants();
  } catch (error) {
    fail((error as Error).message);
  }
  const tenant = tenants.find((t) => t.name === tenantName);
  if (!tenant) fail(`tenant ${tenantName} is not configured (GATEWAY_TENANTS)`);
  try {
    const { token } = await mintJoinToken(tenant, {
      room,
      identity,
      role: role as Role,
      ttlSeconds: values.ttl ? parseTtl(values.ttl) : undefined,
      canPublish: !values['no-publish'],
      canSubscribe: !values['no-subscribe'],
      sources,
      canRecord: values['can-record'] ?? false,
      preflight: values.preflight ?? false,
    });
    process.stdout.write(`${token}\n`);
  } catch (error) {
    fail(`cannot mint the token: ${(error as Error).message}`);
  }
}

async function mintDesk(values: { tenant?: string; identity?: string; role?: string; ttl?: string; name?: string }): Promise<void> {
  const { tenant: tenantName, identity, role } = values;
  if (!tenantName || !identity || !role) fail('--tenant, --identity and --role are required');
  if (!deskRoles.includes(role as DeskRole)) fail(`--role must be one of ${deskRoles.join(', ')}`);
  const tenant = configuredTenant(tenantName);
  try {
    const { token } = await mintDeskToken(tenant, { identity, role: role as DeskRole, ...(values.name ? { name: values.name } : {}), ...(values.ttl ? { ttlSeconds: parseTtl(values.ttl) } : {}) });
    process.stdout.write(`${token}\n`);
  } catch (error) {
    fail(`cannot mint the token: ${(error as Error).message}`);
  }
}

function configuredTenant(name: string) {
  let tenants;
  try {
    tenants = readTenants();
  } catch (error) {
    fail((error as Error).message);
  }
  const tenant = tenants.find((t) => t.name === name);
  if (!tenant) fail(`tenant ${name} is not configured (GATEWAY_TENANTS)`);
  return tenant;
}

void main();
