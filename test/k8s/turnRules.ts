import { mediaPoolPlacement } from './mediaRules.js';
import { containersOf, envValues, isTurnServer, objectId, resolveEnv, workloads, type Json, type K8sObject, type Rule, type Violation, type Workload } from './objects.js';
import { serviceSpecs } from './services.js';

/**
 * The TURN server (coturn, k8s/base/turn.yaml, docs/turn.md): there when signaling hands out
 * TURN URLs, on the media pool beside the SFUs, TLS on 443, a relay range apart from the SFU's
 * ports, only the media nodes as peers, the shared secret in files only, and certificates and
 * secrets taken up without a restart.
 */

/** Private and special ranges a TURN server must refuse to relay to (the cluster, the cloud's metadata service). */
const privateRanges = ['10.0.0.0-10.255.255.255', '172.16.0.0-172.31.255.255', '192.168.0.0-192.168.255.255', '169.254.0.0-169.254.255.255', '127.0.0.0-127.255.255.255'];
/** Options without which coturn serves more than TURN relays to the SFUs with signaling's credentials. */
const requiredFlags = ['use-auth-secret', 'no-cli', 'no-multicast-peers', 'fingerprint'];
const defaultTurnPort = 3478;
const tlsPort = 443;

/** coturn's configuration file: each option with its values (options may repeat). */
export function parseTurnConfig(text: string): Map<string, string[]> {
  const options = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [name, ...rest] = line.replace(/^--/, '').split('=');
    options.set(name.trim(), [...(options.get(name.trim()) ?? []), rest.join('=').trim()]);
  }
  return options;
}

/** The turnserver.conf a coturn pod mounts, and the container that mounts it (the one writing the configuration). */
function mountedConfig(w: Workload, objects: K8sObject[]): { container: Json; options: Map<string, string[]> } | undefined {
  for (const container of containersOf(w.pod)) {
    for (const mount of container.volumeMounts ?? []) {
      const volume = (w.pod.volumes ?? []).find((v: Json) => v.name === mount.name);
      const name = volume?.configMap?.name;
      const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name && o.metadata.namespace === w.namespace);
      const text = map?.data?.['turnserver.conf'];
      if (typeof text === 'string') return { container, options: parseTurnConfig(text) };
    }
  }
  return undefined;
}

/** The Secret a container has mounted whole at the directory a path names, and the key. */
function mountedSecret(w: Workload, container: Json, file: string): { secretName: string; key: string } | undefined {
  const mount = (container.volumeMounts ?? []).find((m: Json) => file.startsWith(`${m.mountPath}/`) || file === m.mountPath);
  const volume = (w.pod.volumes ?? []).find((v: Json) => v.name === mount?.name);
  if (!volume?.secret || mount.subPath) return undefined;
  return { secretName: volume.secret.secretName, key: file.slice(mount.mountPath.length + 1) };
}

/** Where the configuring container finds the shared secret (deploy/coturn/entrypoint.sh). */
const secretDirOf = (w: Workload, container: Json, objects: K8sObject[]) => resolveEnv(container, w.namespace, objects, true).entries.get('TURN_SECRET_DIR')?.value ?? '/etc/turn/secret';

export const turnRules: Rule = (objects) => {
  const found: Violation[] = [];
  const all = workloads(objects);
  const turnServers = all.filter(isTurnServer);
  const sfus = all.filter((w) => w.service === 'sfu');

  // What signaling hands out, and the Secret it signs with.
  const turnUrls: string[] = [];
  const signingSecrets = new Set<string>();
  for (const w of all.filter((x) => x.service === 'signaling')) {
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'signaling') ?? {};
    const env = resolveEnv(container, w.namespace, objects);
    const urls = (env.entries.get('SIGNALING_TURN_URLS')?.value ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    turnUrls.push(...urls);
    const secretFile = env.entries.get('SIGNALING_TURN_SECRET_FILE')?.value;
    if (secretFile) {
      const secret = mountedSecret(w, container, secretFile);
      if (secret) signingSecrets.add(secret.secretName);
    }
  }
  if (turnUrls.length > 0 && turnServers.length === 0) found.push({ rule: 'turn', object: 'TURN', message: 'signaling hands out TURN URLs, but no coturn workload runs' });
  if (turnUrls.length > 0 && !turnUrls.some((url) => url.startsWith('turns:') && url.includes(`:${tlsPort}`)))
    found.push({ rule: 'turn', object: 'TURN', message: `no turns: URL on port ${tlsPort}: clients behind firewalls that pass only web traffic get no relay` });

  // The SFU's ports, which a relay range must stay apart from (both on the media nodes' host network).
  const sfuRanges: Array<{ what: string; min: number; max: number }> = [];
  for (const w of sfus) {
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'sfu') ?? {};
    try {
      const sfu = serviceSpecs.sfu.settings(envValues(resolveEnv(container, w.namespace, objects, true))).sfu;
      if (sfu) {
        sfuRanges.push({ what: 'media ports', min: sfu.rtcPortMin, max: sfu.rtcPortMin + sfu.workers - 1 });
        sfuRanges.push({ what: 'pipe ports', min: sfu.pipePortMin, max: sfu.pipePortMax });
      }
    } catch {
      // configRules reports it.
    }
  }

  for (const w of turnServers) {
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'turn', object: id, message });
    if (w.object.kind !== 'Deployment') add(`is a ${w.object.kind}, not a Deployment`);
    if (sfus.length > 0 && !sfus.some((s) => s.namespace === w.namespace)) add(`not in the SFU's namespace (${sfus[0].namespace})`);
    mediaPoolPlacement(w, 'coturn').forEach(add);
    if (w.pod.hostNetwork !== true) add('not on the host network: each allocation needs its own public relay port');
    else if (w.pod.dnsPolicy !== 'ClusterFirstWithHostNet') add('on the host network without dnsPolicy ClusterFirstWithHostNet');
    for (const c of containersOf(w.pod)) {
      const extra = (c.securityContext?.capabilities?.add ?? []).filter((cap: string) => cap !== 'NET_BIND_SERVICE');
      if (extra.length > 0) add(`container ${c.name} adds capabilities ${extra.join(', ')}: only NET_BIND_SERVICE (for ${tlsPort})`);
    }
    // The container serving TURN: started as turnserver itself, since without privilege
    // escalation its file capability to bind 443 does not survive an exec from a shell.
    const container = (w.pod.containers ?? []).find((c: Json) => (c.ports ?? []).some((p: Json) => p.containerPort === tlsPort)) ?? w.pod.containers?.[0] ?? {};
    const command: string[] = container.command ?? [];
    if (!/(^|\/)turnserver$/.test(command[0] ?? ''))
      add(`container ${container.name} starts ${command[0] ?? "the image's entrypoint"}, not turnserver: the capability to bind ${tlsPort} is lost across a shell's exec`);

    const config = mountedConfig(w, objects);
    if (!config) {
      add('mounts no ConfigMap with turnserver.conf');
      continue;
    }
    const option = (name: string) => config.options.get(name)?.at(-1);
    const listeningPort = Number(option('listening-port') ?? defaultTurnPort);
    const tlsListeningPort = Number(option('tls-listening-port') ?? 5349);
    if (tlsListeningPort !== tlsPort || config.options.has('no-tls')) add(`TLS listens on ${config.options.has('no-tls') ? 'no port (no-tls)' : tlsListeningPort}, not ${tlsPort}`);
    for (const [file, what] of [
      [option('cert'), 'cert'],
      [option('pkey'), 'pkey'],
    ] as const) {
      if (!file || !mountedSecret(w, container, file)) add(`${what}=${file ?? '(unset)'} is not in a Secret mounted in container ${container.name} (a cert-manager Certificate's)`);
    }
    // A renewal and a rotation taken up without a restart: a watcher that sees the same files and turnserver's process.
    const watcher = (w.pod.containers ?? []).find((c: Json) => /(^|\/)turn-reload$/.test(c.command?.[0] ?? ''));
    const sameMount = (path: string | undefined) => !!path && !!watcher && mountedSecret(w, watcher, path)?.secretName === mountedSecret(w, container, path)?.secretName;
    if (!watcher) add('no reload container: a renewed certificate or a rotated secret is taken up only by a restart');
    else {
      if (w.pod.shareProcessNamespace !== true) add('the pod does not share its process namespace: the certificate watcher cannot signal turnserver');
      if (!sameMount(option('cert')) || !sameMount(option('pkey'))) add(`container ${watcher.name} does not mount the certificate turnserver reads`);
      const runMount = (c: Json) => (c.volumeMounts ?? []).find((m: Json) => m.mountPath === '/run/turn');
      if (!runMount(watcher) || runMount(watcher).name !== runMount(container)?.name) add(`container ${watcher.name} does not see turnserver's configuration and pid file (/run/turn)`);
      else if (runMount(watcher).readOnly) add(`container ${watcher.name} mounts /run/turn read-only: it cannot rewrite the secrets' database`);
      const secretDir = secretDirOf(w, config.container, objects);
      const watched = mountedSecret(w, watcher, `${secretDirOf(w, watcher, objects)}/secret`)?.secretName;
      if (!watched || watched !== mountedSecret(w, config.container, `${secretDir}/secret`)?.secretName)
        add(`container ${watcher.name} does not mount the shared secret the configuration is written from: a rotation waits for a restart`);
    }
    for (const flag of requiredFlags) if (!config.options.has(flag)) add(`turnserver.conf lacks ${flag}`);
    if (!option('realm')) add('turnserver.conf sets no realm');
    if (config.options.has('static-auth-secret')) add('static-auth-secret is in the ConfigMap: the secret comes from a mounted Secret only');
    const denied = config.options.get('denied-peer-ip') ?? [];
    for (const range of privateRanges) if (!denied.includes(range)) add(`denied-peer-ip=${range} is missing: credentials would reach the private network`);
    if (config.options.has('allow-loopback-peers')) add('allow-loopback-peers: the node itself would be a peer');
    const env = resolveEnv(config.container, w.namespace, objects, true);
    const allowed = env.entries.get('TURN_ALLOWED_PEER_RANGE')?.value;
    if (!allowed || !(allowed === 'none' || /^[0-9a-fA-F:.]+-[0-9a-fA-F:.]+$/.test(allowed))) add(`TURN_ALLOWED_PEER_RANGE is ${allowed ?? 'unset'}, not the media nodes' range (first-last) or none`);

    // Ports: the declared ones, and the relay range apart from the SFU's.
    const ports: Json[] = container.ports ?? [];
    for (const [port, protocol] of [
      [listeningPort, 'UDP'],
      [listeningPort, 'TCP'],
      [tlsPort, 'TCP'],
    ] as const) {
      if (!ports.some((p) => p.containerPort === port && (p.protocol ?? 'TCP') === protocol)) add(`no ${protocol} container port ${port}`);
    }
    const relayMin = Number(option('min-port') ?? 49152);
    const relayMax = Number(option('max-port') ?? 65535);
    if (!(relayMin > 1024 && relayMin <= relayMax && relayMax <= 65535)) add(`relay ports ${relayMin}-${relayMax} are not a range above 1024`);
    for (const range of sfuRanges) {
      if (relayMin <= range.max && range.min <= relayMax) add(`relay ports ${relayMin}-${relayMax} overlap the SFU's ${range.what} ${range.min}-${range.max}`);
      for (const port of [listeningPort, tlsPort]) if (port >= range.min && port <= range.max) add(`port ${port} is among the SFU's ${range.what}`);
    }
    for (const probe of ['livenessProbe', 'readinessProbe']) {
      if (container[probe]?.tcpSocket?.port !== listeningPort && container[probe]?.tcpSocket?.port !== 'turn-tcp') add(`the ${probe} is not a TCP connection to ${listeningPort}`);
    }

    // The shared secret: the same Secret as signaling's, as a file.
    const secretDir = secretDirOf(w, config.container, objects);
    const secret = mountedSecret(w, config.container, `${secretDir}/secret`);
    if (!secret) add(`container ${config.container.name}: no Secret mounted whole at ${secretDir} (the shared secret)`);
    else if (signingSecrets.size > 0 && !signingSecrets.has(secret.secretName)) add(`verifies with Secret ${secret.secretName}, signaling signs with ${[...signingSecrets].join(', ')}`);
  }

  // The shared secret never in an environment, where child processes and crash dumps inherit it.
  const turnSecrets = new Set(signingSecrets);
  for (const w of turnServers) {
    for (const c of containersOf(w.pod)) {
      const secret = mountedSecret(w, c, `${secretDirOf(w, c, objects)}/secret`);
      if (secret) turnSecrets.add(secret.secretName);
    }
  }
  for (const w of all) {
    for (const c of containersOf(w.pod)) {
      const inEnv = [
        ...(c.env ?? []).filter((e: Json) => turnSecrets.has(e.valueFrom?.secretKeyRef?.name)).map((e: Json) => e.name),
        ...(c.envFrom ?? []).filter((e: Json) => turnSecrets.has(e.secretRef?.name)).map((e: Json) => `envFrom ${e.secretRef.name}`),
      ];
      if (inEnv.length > 0) found.push({ rule: 'turn', object: objectId(w.object), message: `container ${c.name}: the TURN secret is in the environment (${inEnv.join(', ')}): mount it as a file` });
    }
  }
  return found;
};
