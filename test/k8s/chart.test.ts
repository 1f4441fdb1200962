import { beforeAll, describe, expect, it } from 'vitest';
import { chartObjectsOf, renderValueSets, valueSets } from './chart.js';
import { messages } from './overlays.js';
import { checkManifests } from './rules.js';
import { schemaVariables } from './services.js';

/**
 * The Helm chart (deploy/helm/gateway) over every value set of its ci/ folder: each rendering
 * follows the deployment rules (rules.ts) as the kustomize overlays do.
 */

beforeAll(renderValueSets);

/**
 * The variables of the SFU's address discovery (docs/kubernetes.md, "Announced address"): until
 * the SFU reads them, the config rule reports them for the value sets that set them; once it
 * does, nothing is excused.
 */
const pendingSfuVariables = ['SFU_ANNOUNCED_ADDRESS_SOURCE', 'SFU_STUN_SERVERS'].filter((name) => !schemaVariables('sfu').has(name));
const pending = (message: string) => pendingSfuVariables.some((name) => message === `[config] Deployment gateway-media/sfu: ${name} is not a variable sfu reads`);

describe('the Helm chart', () => {
  for (const valueSet of valueSets) {
    it(`${valueSet}: follows every deployment rule`, () => {
      expect(messages(checkManifests(chartObjectsOf(valueSet))).filter((m) => !pending(m))).toEqual([]);
    });
  }
});
