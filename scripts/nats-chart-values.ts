// Writes the NATS authorization (the users and their permissions, from
// packages/common/src/jetstream/access.ts) into the chart values, deploy/nats/values.yaml:
// config.merge.authorization and the container environment that carries the public nkeys.
// test/k8s fails while the file differs from what this writes.
//
//   make nats-values
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { natsChartAuthorization, natsChartEnv } from '@gateway/common';

const file = fileURLToPath(new URL('../deploy/nats/values.yaml', import.meta.url));
const doc = parseDocument(readFileSync(file, 'utf8'));
doc.setIn(['config', 'merge', 'authorization'], doc.createNode(natsChartAuthorization()));
for (const [name, value] of Object.entries(natsChartEnv())) doc.setIn(['container', 'env', name], doc.createNode(value));
writeFileSync(file, doc.toString({ lineWidth: 0 }));
