/** One scrape of a Prometheus /metrics endpoint: each metric's type and samples. */
export interface Scrape {
  /** Metric family name -> type (counter, gauge, histogram, summary). */
  types: Map<string, string>;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

export async function scrapeMetrics(opsPort: number): Promise<Scrape> {
  // A service that stopped answering fails the scrape, not the whole test at its timeout.
  const res = await fetch(`http://127.0.0.1:${opsPort}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** The Prometheus text format, as prom-client writes it. */
export function parseMetrics(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Scrape['samples'] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: sample[1]!, labels, value: Number(sample[3]) });
  }
  return { types, samples };
}

/** A metric's value on the service at `opsPort` (the sum of its samples whose labels include `labels`); undefined when it has no sample. */
export async function metricValue(opsPort: number, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const scrape = await scrapeMetrics(opsPort);
  return scrape.samples.some((s) => s.name === name) ? sumOf(scrape, name, labels) : undefined;
}

/** The sum of a metric's samples whose labels include `labels`. */
export function sumOf(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  return scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}
