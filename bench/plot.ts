// An SVG of latency distributions: one horizontal box per path (p1–p99 whisker, p25–p75 box, p50
// line) on a log-scaled millisecond axis. No dependencies; small enough to commit.
import { percentile } from './stats.js';

export function latencySvg(samples: Record<string, number[]>, title: string): string {
  const names = Object.keys(samples).filter((k) => samples[k]!.length > 0);
  const W = 860;
  const rowH = 34;
  const left = 190;
  const right = 30;
  const top = 50;
  const H = top + rowH * names.length + 50;
  const all = names.flatMap((n) => samples[n]!);
  const lo = Math.max(0.05, Math.min(...all) * 0.8);
  const hi = Math.max(...all) * 1.2;
  const x = (ms: number): number =>
    left + ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - left - right);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="14">${title}</text>`);
  for (let d = Math.floor(Math.log10(lo)); d <= Math.ceil(Math.log10(hi)); d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (v < lo || v > hi) continue;
      parts.push(`<line x1="${x(v)}" y1="${top - 10}" x2="${x(v)}" y2="${H - 40}" stroke="#ddd"/>`);
      parts.push(`<text x="${x(v)}" y="${H - 24}" text-anchor="middle" fill="#555">${v} ms</text>`);
    }
  }
  names.forEach((n, i) => {
    const s = [...samples[n]!].sort((a, b) => a - b);
    const y = top + i * rowH + rowH / 2;
    const [p1, p25, p50, p75, p99] = [1, 25, 50, 75, 99].map((p) => percentile(s, p));
    const color = n.startsWith('meshcni') ? '#1f77b4' : n === 'exec_floor' ? '#2ca02c' : '#d62728';
    parts.push(`<text x="${left - 10}" y="${y + 4}" text-anchor="end">${n}</text>`);
    parts.push(`<line x1="${x(p1!)}" y1="${y}" x2="${x(p99!)}" y2="${y}" stroke="${color}"/>`);
    parts.push(
      `<rect x="${x(p25!)}" y="${y - 9}" width="${Math.max(1, x(p75!) - x(p25!))}" height="18" fill="${color}" fill-opacity="0.35" stroke="${color}"/>`,
    );
    parts.push(
      `<line x1="${x(p50!)}" y1="${y - 11}" x2="${x(p50!)}" y2="${y + 11}" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${x(p99!) + 6}" y="${y + 4}" fill="#333">${p50!.toFixed(2)} ms</text>`);
  });
  parts.push(`<text x="${left}" y="${H - 6}" fill="#777">box: p25–p75, line: p50, whiskers: p1–p99 (log scale)</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
