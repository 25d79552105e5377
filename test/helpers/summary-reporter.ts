// Closes every run with one plain line, `N passed, N failed, N skipped`, that any CI can read. In CI
// (CI=true) a skipped test fails the run: every test here must run there, root and netns included.
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
    }
    if (process.env.CI === 'true' && skipped > 0) {
      process.stdout.write(`\n${skipped} test(s) skipped in CI: every test must run here (root, real namespaces)\n`);
      process.exitCode = 1;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
