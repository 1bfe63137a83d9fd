import type { Registry as PromRegistry } from 'prom-client';

/**
 * Counter and histogram families for the request path. prom-client's labelled children hash
 * their label set on every inc()/observe() (≈8 µs of CPU per proxied request across lb's three
 * families, measured with bench/ and --cpu-prof); here a child is a plain record made once per
 * label set, the hot path only adds numbers, and the exposition is built at scrape time through
 * prom-client's metric interface (`get()`), so registries, /metrics text and the cluster
 * aggregator treat these families like their own.
 */

type Labels = Record<string, string>;

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

abstract class HotFamily<C> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum' as const;
  readonly #labelNames: readonly string[];
  readonly #children = new Map<string, { labels: Labels; child: C }>();

  constructor(o: { name: string; help: string; labelNames: readonly string[]; registers: PromRegistry[] }) {
    this.name = o.name;
    this.help = o.help;
    this.#labelNames = o.labelNames;
    for (const r of o.registers) r.registerMetric(this as never);
  }

  protected abstract make(): C;
  protected abstract values(labels: Labels, child: C, out: MetricValue[]): void;

  /** The child for these label values (in labelNames order); made once, then reused. */
  labels(...values: string[]): C {
    const key = values.join('\u0000');
    let entry = this.#children.get(key);
    if (!entry) {
      const labels: Labels = {};
      this.#labelNames.forEach((n, i) => (labels[n] = values[i]));
      entry = { labels, child: this.make() };
      this.#children.set(key, entry);
    }
    return entry.child;
  }

  remove(...values: string[]): void {
    this.#children.delete(values.join('\u0000'));
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValue[] }> {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.#children.values()) this.values(labels, child, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface HotCounterChild {
  value: number;
}

export class HotCounter extends HotFamily<HotCounterChild> {
  readonly type = 'counter';
  protected make(): HotCounterChild {
    return { value: 0 };
  }
  protected values(labels: Labels, child: HotCounterChild, out: MetricValue[]): void {
    out.push({ labels: { ...labels }, value: child.value });
  }
}

export class HotHistogramChild {
  /** counts[i]: observations ≤ bounds[i] and > bounds[i-1]; the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: readonly number[];
  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

export class HotHistogram extends HotFamily<HotHistogramChild> {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];
  constructor(o: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[]; registers: PromRegistry[] }) {
    super(o);
    this.#bounds = [...o.buckets].sort((a, b) => a - b);
  }
  protected make(): HotHistogramChild {
    return new HotHistogramChild(this.#bounds);
  }
  protected values(labels: Labels, child: HotHistogramChild, out: MetricValue[]): void {
    let cumulative = 0;
    const bucket = `${this.name}_bucket`;
    this.#bounds.forEach((le, i) => {
      cumulative += child.counts[i];
      out.push({ labels: { ...labels, le }, value: cumulative, metricName: bucket });
    });
    out.push({ labels: { ...labels, le: '+Inf' }, value: child.count, metricName: bucket });
    out.push({ labels: { ...labels }, value: child.sum, metricName: `${this.name}_sum` });
    out.push({ labels: { ...labels }, value: child.count, metricName: `${this.name}_count` });
  }
}
