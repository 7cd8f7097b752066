import parsePrometheusTextFormat, { type PrometheusFamily, type PrometheusSample } from 'parse-prometheus-text-format';

/** One scrape of a /metrics page, parsed by a real Prometheus text-format parser, with lookups for the assertions. */
export class Scrape {
  readonly families: ReadonlyMap<string, PrometheusFamily>;

  constructor(readonly text: string) {
    this.families = new Map(parsePrometheusTextFormat(text).map((family) => [family.name, family]));
  }

  family(name: string): PrometheusFamily {
    const family = this.families.get(name);
    if (family === undefined) throw new Error(`no metric ${name} in:\n${this.text}`);
    return family;
  }

  /** The value of the sample of `name` with exactly `labels`; undefined if there is no such sample. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const sample = this.#sample(name, labels);
    return sample?.value === undefined ? undefined : Number(sample.value);
  }

  /** Every sample of `name`, by its one label `label`'s value. */
  byLabel(name: string, label: string): Record<string, number> {
    return Object.fromEntries(this.family(name).metrics.map((sample) => [sample.labels?.[label] ?? '', Number(sample.value)]));
  }

  /** A histogram's count, sum, and cumulative counts by upper bound. */
  histogram(name: string): { count: number; sum: number; buckets: Record<string, number> } {
    const sample = this.#sample(name, {});
    if (sample?.buckets === undefined) throw new Error(`${name} is not a histogram here`);
    return {
      count: Number(sample.count),
      sum: Number(sample.sum),
      buckets: Object.fromEntries(Object.entries(sample.buckets).map(([bound, count]) => [bound, Number(count)])),
    };
  }

  /**
   * The _count of the histogram `name`'s series whose one label `label` is `value`, read from the
   * text: the parser loses the labels and counts of a histogram whose buckets carry a label besides
   * `le` (prom-client's nodejs_gc_duration_seconds{kind}). Undefined if there is no such series.
   */
  labelledHistogramCount(name: string, label: string, value: string): number | undefined {
    const line = new RegExp(`^${name}_count\\{${label}="${value}"\\} (\\d+)$`, 'm').exec(this.text);
    return line?.[1] === undefined ? undefined : Number(line[1]);
  }

  #sample(name: string, labels: Record<string, string>): PrometheusSample | undefined {
    const wanted = JSON.stringify(Object.entries(labels).sort());
    return this.family(name).metrics.find((sample) => JSON.stringify(Object.entries(sample.labels ?? {}).sort()) === wanted);
  }
}

/** GETs http://127.0.0.1:PORT/metrics and parses it; fails on anything but a 200 in the Prometheus text format. */
export async function scrape(port: number, host = '127.0.0.1'): Promise<Scrape> {
  const response = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${text}`);
  const type = response.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain') || !type.includes('version=0.0.4')) throw new Error(`/metrics is not the Prometheus text format: ${type}`);
  return new Scrape(text);
}
