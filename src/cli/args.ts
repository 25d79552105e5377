// Command-line parsing: `meshcni-agent <command> [--flag value]…` on node:util parseArgs (strict),
// with one table of commands and flags that both the parser and the usage text read.
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** 'string' flags take a value (`--pod FILE` or `--pod=FILE`); 'boolean' flags are on/off. */
  type: 'string' | 'boolean';
  /** What the value is, for the usage text (`FILE`, `DIR`, …); string flags only. */
  value?: string;
  help: string;
  required?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  flags: Record<string, FlagSpec>;
}

export interface ParsedArgs {
  values: Map<string, string>;
  switches: Set<string>;
  /** `--help` / `-h` was given: print the command's usage instead of running it. */
  help: boolean;
}

/** `--pod FILE` or `[--config FILE]`, as the usage text shows it. */
function flagSynopsis(name: string, f: FlagSpec): string {
  const text = f.type === 'string' ? `--${name} ${f.value ?? 'VALUE'}` : `--${name}`;
  return f.required ? text : `[${text}]`;
}

export function commandUsage(cmd: CommandSpec): string {
  const names = Object.keys(cmd.flags);
  const width = Math.max(...names.map((n) => flagSynopsis(n, { ...cmd.flags[n]!, required: true }).length), 9);
  const lines = names.map(
    (n) => `  ${flagSynopsis(n, { ...cmd.flags[n]!, required: true }).padEnd(width)}  ${cmd.flags[n]!.help}`,
  );
  return [
    `usage: meshcni-agent ${cmd.name} ${names.map((n) => flagSynopsis(n, cmd.flags[n]!)).join(' ')}`.trimEnd(),
    '',
    cmd.summary,
    '',
    'flags:',
    ...lines,
    `  ${'--help'.padEnd(width)}  print this text`,
    '',
  ].join('\n');
}

/** The flag named in a parseArgs error message (`Unknown option '--bogus'`, `Option '--pod <value>' …`). */
function flagIn(message: string): string {
  return /'(-{1,2}[^' <]+)/.exec(message)?.[1] ?? '?';
}

/**
 * Parses one command's flags. Every problem becomes a one-line UsageError naming the command and
 * the flag: unknown flags, a missing or empty value, a value given to a switch, a flag given twice,
 * a positional argument, and a missing required flag.
 */
export function parseFlags(argv: readonly string[], cmd: CommandSpec): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, f] of Object.entries(cmd.flags)) options[name] = { type: f.type };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false, tokens: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    switch (err.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
        throw new UsageError(`${cmd.name}: unknown flag ${flagIn(err.message)}`);
      case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
        throw new UsageError(`${cmd.name}: unexpected argument ${/'[^']*'/.exec(err.message)?.[0] ?? ''}`.trimEnd());
      case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
        throw new UsageError(
          /does not take an argument/.test(err.message)
            ? `${cmd.name}: ${flagIn(err.message)} takes no value`
            : `${cmd.name}: ${flagIn(err.message)} needs a value`,
        );
      default:
        throw new UsageError(`${cmd.name}: ${err.message.split('\n')[0]}`);
    }
  }
  const help = parsed.values.help === true;
  const seen = new Set<string>();
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || t.name === 'help') continue;
    if (seen.has(t.name)) throw new UsageError(`${cmd.name}: --${t.name} given twice`);
    seen.add(t.name);
    if (cmd.flags[t.name]!.type === 'boolean') {
      switches.add(t.name);
    } else {
      if (!t.value) throw new UsageError(`${cmd.name}: --${t.name} needs a value`);
      values.set(t.name, t.value);
    }
  }
  if (!help) {
    for (const [name, f] of Object.entries(cmd.flags)) {
      if (f.required && !values.has(name)) throw new UsageError(`${cmd.name}: --${name} is required`);
    }
  }
  return { values, switches, help };
}
