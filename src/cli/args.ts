// Command-line parsing: `meshcni-agent <command> [--flag value]…`, strict (unknown flags are errors).

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** Flags that take a value. */
  values: readonly string[];
  /** Flags that are on/off. */
  switches?: readonly string[];
}

export interface ParsedArgs {
  values: Map<string, string>;
  switches: Set<string>;
}

export function parseFlags(argv: readonly string[], spec: FlagSpec, command: string): ParsedArgs {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    if (!raw.startsWith('--')) throw new UsageError(`${command}: unexpected argument '${raw}'`);
    const eq = raw.indexOf('=');
    const name = eq === -1 ? raw.slice(2) : raw.slice(2, eq);
    if (spec.switches?.includes(name)) {
      if (eq !== -1) throw new UsageError(`${command}: --${name} takes no value`);
      switches.add(name);
      continue;
    }
    if (!spec.values.includes(name)) throw new UsageError(`${command}: unknown flag --${name}`);
    const value = eq !== -1 ? raw.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') throw new UsageError(`${command}: --${name} needs a value`);
    if (values.has(name)) throw new UsageError(`${command}: --${name} given twice`);
    values.set(name, value);
  }
  return { values, switches };
}

export function required(p: ParsedArgs, name: string, command: string): string {
  const v = p.values.get(name);
  if (v === undefined) throw new UsageError(`${command}: --${name} is required`);
  return v;
}
