// Writes a benchmark's latest tables between its markers in bench/README.md (`<!-- NAME:begin -->` …
// `<!-- NAME:end -->`), with the load average at the start and end of the run: the figures are only
// as good as the machine was quiet.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness.js';

/** /proc/loadavg's 1, 5 and 15 minute averages. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Replaces the text between NAME's markers; a README without them is left as it is (and says so). */
export function updateBenchReadme(name: string, text: string): void {
  const path = join(ROOT, 'bench/README.md');
  const readme = readFileSync(path, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const a = readme.indexOf(begin);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) {
    console.log(`bench/README.md has no ${begin} … ${end}: tables not written there`);
    return;
  }
  writeFileSync(path, `${readme.slice(0, a + begin.length)}\n${text}\n${readme.slice(b)}`);
}
