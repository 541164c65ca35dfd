// Counts checks as passed, failed or not run, and prints the closing line.

export class Tally {
  passed = 0;
  failed = 0;
  /** @type {{ name: string, reason: string }[]} */
  notRun = [];
  /** @type {{ name: string, reason: string }[]} */
  failures = [];

  pass(name, detail = '') {
    this.passed++;
    console.log(`PASS ${name}${detail ? ` — ${detail}` : ''}`);
  }

  fail(name, reason) {
    this.failed++;
    this.failures.push({ name, reason });
    console.log(`FAIL ${name}\n${indent(reason)}`);
  }

  skip(name, reason) {
    this.notRun.push({ name, reason });
    console.log(`NOT RUN ${name} — ${reason}`);
  }

  /** Run fn as one named check: passes unless it throws; its return value is the detail. */
  async check(name, fn) {
    try {
      const detail = await fn();
      this.pass(name, typeof detail === 'string' ? detail : '');
      return true;
    } catch (err) {
      this.fail(name, err instanceof Error ? err.message : String(err));
      return false;
    }
  }

  /**
   * Print the summary and return the exit code. With `strict` (CI), checks that did not run
   * count as failures: a missing package must not look like a pass.
   */
  finish(strict) {
    for (const { name, reason } of this.notRun) console.log(`  not run: ${name}: ${reason}`);
    for (const { name } of this.failures) console.log(`  failed: ${name}`);
    const notRun = this.notRun.length;
    console.log(
      `${this.passed} passed, ${this.failed} failed${notRun ? `, ${notRun} not run${strict ? ' (counted as failures: strict)' : ''}` : ''}`,
    );
    return this.failed > 0 || (strict && notRun > 0) ? 1 : 0;
  }
}

function indent(text) {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
