#!/usr/bin/env node
// meshcni-agent: the node agent's command line. Thin: parse flags, call the rooms below, print.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
// The agent module (and the Kubernetes client it pulls in) loads only for commands that need it:
// --version, --help, rules and install start in a fraction of the time.
import type { Agent, makePlanner } from '../agent/agent.js';
import { loadSettingsFile, parseSettings, type AgentSettings } from '../agent/config.js';
import { INDEX_FILE_NAME } from '../agent/state/pod-index.js';
import { parseCaptureConfig } from '../capture/config.js';
import { readTables } from '../nft/apply.js';
import { diffTables } from '../nft/ruleset.js';
import { planRules } from '../capture/plan.js';
import { parsePodManifest } from '../capture/pod.js';
import { BUILD_VERSION } from '../agent/metrics.js';
import { commandUsage, parseFlags, UsageError, type CommandSpec, type FlagSpec, type ParsedArgs } from './args.js';

/** The install command's bounded wait: a CLI run must end; `serve --install` waits as long as it takes. */
const DEFAULT_WAIT_SECONDS = 60;

const settingsFlags = {
  config: { type: 'string', value: 'FILE', help: 'the agent settings file (YAML); flags override it' },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|fatal (default info)' },
} satisfies Record<string, FlagSpec>;
const cniDirFlags = {
  'cni-conf-dir': { type: 'string', value: 'DIR', help: "the node's CNI config dir (default /etc/cni/net.d)" },
  'cni-bin-dir': { type: 'string', value: 'DIR', help: 'where the shim is copied (default /opt/cni/bin)' },
  socket: {
    type: 'string',
    value: 'PATH',
    help: "the agent's unix socket, written into the chain entry (default /var/run/meshcni/cni.sock)",
  },
} satisfies Record<string, FlagSpec>;
const layoutFlag = {
  type: 'string',
  value: 'iptables|nft',
  help: 'rule layout (default from the settings: iptables)',
} satisfies FlagSpec;
const podFlags = {
  pod: { type: 'string', value: 'FILE', help: 'the pod manifest (YAML or JSON)', required: true },
  config: settingsFlags.config,
  layout: layoutFlag,
} satisfies Record<string, FlagSpec>;
const netnsFlag = {
  type: 'string',
  value: 'PATH',
  help: "the pod's network namespace (e.g. /var/run/netns/NAME)",
  required: true,
} satisfies FlagSpec;

/** Every command and every flag it accepts: the parser and the usage texts both read this table. */
const COMMANDS = {
  serve: {
    name: 'serve',
    summary: 'Run the node agent: CNI socket, /healthz /readyz /metrics, reconcile.',
    flags: {
      ...settingsFlags,
      'pods-dir': {
        type: 'string',
        value: 'DIR',
        help: 'standalone mode: pod manifests from this dir instead of the API server',
      },
      ...cniDirFlags,
      'state-dir': { type: 'string', value: 'DIR', help: 'where per-pod state is kept (default /var/run/meshcni)' },
      'metrics-address': {
        type: 'string',
        value: 'HOST:PORT',
        help: "loopback admin endpoint (default 127.0.0.1:15120; '' disables)",
      },
      'metrics-scrape-address': {
        type: 'string',
        value: 'HOST:PORT',
        help: '/metrics only, for Prometheus, on any address (default off)',
      },
      layout: layoutFlag,
      install: { type: 'boolean', help: "chain into the node's CNI config on start and keep it there" },
    },
  },
  rules: {
    name: 'rules',
    summary: 'Print what would be programmed for the pod, or why it is skipped.',
    flags: podFlags,
  },
  apply: {
    name: 'apply',
    summary: "Program the pod's rules into the namespace once, as one transaction.",
    flags: { ...podFlags, netns: netnsFlag },
  },
  verify: {
    name: 'verify',
    summary: 'Exit 0 only if the namespace holds exactly the expected rules.',
    flags: { ...podFlags, netns: netnsFlag },
  },
  install: {
    name: 'install',
    summary: "Copy the shim and chain meshcni into the node's CNI config once, then exit.",
    flags: {
      ...settingsFlags,
      ...cniDirFlags,
      'wait-timeout': {
        type: 'string',
        value: 'SECONDS',
        help: `how long to wait for a valid primary CNI config (default ${DEFAULT_WAIT_SECONDS})`,
      },
      'without-agent': {
        type: 'boolean',
        help: 'chain in although no agent answers on the socket: new pods fail ADD until one serves',
      },
    },
  },
  uninstall: {
    name: 'uninstall',
    summary: 'Unchain exactly what install added; the shim stays (it answers DEL of pods added while chained).',
    flags: {
      ...settingsFlags,
      ...cniDirFlags,
      purge: { type: 'boolean', help: 'also remove the shim (once no pod added while meshcni was chained is left)' },
    },
  },
} satisfies Record<string, CommandSpec>;

function usage(): string {
  const cmds = Object.values(COMMANDS as Record<string, CommandSpec>);
  const width = Math.max(...cmds.map((c) => c.name.length));
  return [
    'usage: meshcni-agent <command> [flags]',
    '       meshcni-agent <command> --help',
    '       meshcni-agent --version',
    '',
    'commands:',
    ...cmds.map(
      (c) =>
        `  ${c.name.padEnd(width)}  ${c.summary}\n  ${''.padEnd(width)}  ${Object.keys(c.flags)
          .map((f) => `--${f}`)
          .join(' ')}`,
    ),
    '',
  ].join('\n');
}

/** Parses a command's flags; prints its usage and returns null on --help. */
function flagsOf(argv: string[], cmd: CommandSpec): ParsedArgs | null {
  const p = parseFlags(argv, cmd);
  if (!p.help) return p;
  process.stdout.write(commandUsage(cmd));
  return null;
}

/** Settings: the config file, then flags on top. */
/** Settings: the config file, then flags on top. */
function settingsFrom(p: ParsedArgs): AgentSettings {
  const file = p.values.get('config');
  const obj = loadSettingsFile(file);
  const flag = (name: string, key: string): void => {
    const v = p.values.get(name);
    if (v !== undefined) obj[key] = v;
  };
  flag('pods-dir', 'podsDir');
  flag('socket', 'socketPath');
  flag('cni-conf-dir', 'cniConfDir');
  flag('cni-bin-dir', 'cniBinDir');
  flag('state-dir', 'stateDir');
  flag('metrics-address', 'metricsAddress');
  flag('metrics-scrape-address', 'metricsScrapeAddress');
  flag('layout', 'layout');
  flag('log-level', 'logLevel');
  if (p.switches.has('install')) obj.install = true;
  return parseSettings(obj, file ?? 'flags');
}

function readPod(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read pod file ${path}: ${(e as Error).message}`);
  }
  return parsePodManifest(text, `pod file ${path}`);
}

/** The settings, netns and plan shared by apply and verify. */
async function podCommand(p: ParsedArgs): Promise<{ netns: string; plan: ReturnType<ReturnType<typeof makePlanner>> }> {
  const settings = settingsFrom(p);
  const { makePlanner } = await import('../agent/agent.js');
  return {
    netns: p.values.get('netns')!,
    plan: makePlanner(parseCaptureConfig(settings.capture))(readPod(p.values.get('pod')!)),
  };
}

async function rules(argv: string[]): Promise<number> {
  const p = flagsOf(argv, COMMANDS.rules);
  if (!p) return 0;
  const settings = settingsFrom(p);
  const plan = planRules(readPod(p.values.get('pod')!), parseCaptureConfig(settings.capture));
  if (!plan.capture) {
    process.stdout.write(`# not captured: ${plan.reason}\n`);
    return 0;
  }
  process.stdout.write(plan.text.endsWith('\n') ? plan.text : `${plan.text}\n`);
  return 0;
}

async function apply(argv: string[]): Promise<number> {
  const p = flagsOf(argv, COMMANDS.apply);
  if (!p) return 0;
  const { netns, plan } = await podCommand(p);
  if (!plan.capture) {
    process.stdout.write(`not captured, nothing programmed: ${plan.reason}\n`);
    return 0;
  }
  const t0 = performance.now();
  const { applyPlan } = await import('../agent/agent.js');
  await applyPlan(netns, plan);
  const rules = plan.tables.reduce((n, t) => n + t.rules.length, 0);
  process.stdout.write(
    `programmed ${plan.tables.length} table(s), ${rules} rule(s) into ${netns} in ${(performance.now() - t0).toFixed(2)} ms (${plan.layout} layout, one transaction)\n`,
  );
  return 0;
}

async function verify(argv: string[]): Promise<number> {
  const p = flagsOf(argv, COMMANDS.verify);
  if (!p) return 0;
  const { netns, plan } = await podCommand(p);
  if (!plan.capture) {
    process.stdout.write(`not captured: ${plan.reason}\n`);
    return 0;
  }
  const diffs = diffTables(plan.tables, await readTables(netns));
  if (diffs.length === 0) {
    process.stdout.write(`${netns} holds exactly the expected rules\n`);
    return 0;
  }
  process.stdout.write(
    `${netns} differs from the expected rules in ${diffs.length} place(s):\n${diffs.map((d) => `  ${d}`).join('\n')}\n`,
  );
  return 1;
}

async function serve(argv: string[]): Promise<number> {
  const p = flagsOf(argv, COMMANDS.serve);
  if (!p) return 0;
  const settings = settingsFrom(p);
  const log = pino({ level: settings.logLevel, base: { component: 'meshcni-agent' } });
  // eslint-disable-next-line prefer-const -- the installer's callback may read it before it is set
  let agent: Agent | undefined;
  const installer = settings.install
    ? await makeInstaller(settings, log, (installed) => agent?.metrics.installReady.set(installed ? 1 : 0))
    : undefined;
  const { Agent: AgentClass } = await import('../agent/agent.js');
  agent = new AgentClass(settings, log, installer ? { installer } : {});
  try {
    await agent.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, 'meshcni agent failed to start');
    // Undo whatever did start (listeners, watchers); the start error is the one to report.
    await agent.stop().catch(() => undefined);
    throw e;
  }
  const running = agent;
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down: finishing in-flight requests');
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      running.stop().then(resolve, (e: unknown) => {
        log.error({ err: (e as Error).message }, 'error during shutdown');
        resolve();
      });
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  return 0;
}

/** What the installer needs from the settings: the same entry for serve and install. */
function installerOptions(settings: AgentSettings, log: pino.Logger) {
  return {
    cniConfDir: settings.cniConfDir,
    cniBinDir: settings.cniBinDir,
    cniConfFileName: settings.cniConfFileName,
    ownedConfigFileName: settings.ownedConfigFileName,
    chained: settings.chained,
    socketPath: settings.socketPath,
    podIndexPath: join(settings.stateDir, INDEX_FILE_NAME),
    excludeNamespaces: [...parseCaptureConfig(settings.capture).excludeNamespaces],
    logLevel: settings.logLevel,
    log,
  };
}

async function makeInstaller(settings: AgentSettings, log: pino.Logger, onInstallState: (installed: boolean) => void) {
  const { CniInstaller } = await import('../install/installer.js');
  return new CniInstaller({ ...installerOptions(settings, log), onInstallState });
}

function waitSeconds(p: ParsedArgs): number {
  const raw = p.values.get('wait-timeout');
  if (raw === undefined) return DEFAULT_WAIT_SECONDS;
  const n = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= 86400))
    throw new UsageError(`install: --wait-timeout ${JSON.stringify(raw)}: must be whole seconds from 1 to 86400`);
  return n;
}

async function installCmd(argv: string[], remove: boolean): Promise<number> {
  const p = flagsOf(argv, remove ? COMMANDS.uninstall : COMMANDS.install);
  if (!p) return 0;
  const settings = settingsFrom(p);
  const wait = remove ? 0 : waitSeconds(p);
  const log = pino({ level: settings.logLevel, base: { component: 'meshcni-install' } });
  const { runInstall, runUninstall } = await import('../install/installer.js');
  const opts = installerOptions(settings, log);
  if (remove) {
    await runUninstall({ ...opts, purge: p.switches.has('purge') });
    return 0;
  }
  const res = await runInstall({ ...opts, waitTimeoutMs: wait * 1000, withoutAgent: p.switches.has('without-agent') });
  process.stdout.write(
    res.alreadyChained
      ? `meshcni was already chained into ${res.config}; nothing changed\n`
      : `meshcni chained into ${res.config} (shim ${res.shim})\n`,
  );
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'rules':
      return rules(rest);
    case 'apply':
      return apply(rest);
    case 'verify':
      return verify(rest);
    case 'install':
      return installCmd(rest, false);
    case 'uninstall':
      return installCmd(rest, true);
    case '--version':
    case 'version':
      process.stdout.write(
        `meshcni-agent ${BUILD_VERSION} (node ${process.versions.node}, ${process.platform}-${process.arch})\n`,
      );
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage());
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}' (try: meshcni-agent --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`meshcni-agent: ${err.message.split('\n')[0]}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
