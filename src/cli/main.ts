#!/usr/bin/env node
// meshcni-agent: the node agent's command line. Thin: parse flags, call the rooms below, print.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent, applyPlan, makePlanner } from '../agent/agent.js';
import { loadSettingsFile, parseSettings, type AgentSettings } from '../agent/config.js';
import { INDEX_FILE_NAME } from '../agent/pod-index.js';
import { parseCaptureConfig } from '../capture/config.js';
import { readTables } from '../nft/apply.js';
import { diffTables } from '../nft/ruleset.js';
import { planPod } from '../capture/plan.js';
import { parsePodManifest } from '../capture/pod.js';
import { parseFlags, required, UsageError, type ParsedArgs } from './args.js';

const USAGE = `usage: meshcni-agent <command> [flags]

commands:
  serve      [--config FILE] [--pods-dir DIR] [--socket PATH] [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--install]
             run the node agent (CNI socket, /healthz /readyz /metrics, reconcile)
  rules      --pod FILE [--config FILE] [--layout iptables|nft]
             print what would be programmed for the pod, or why it is skipped
  apply      --pod FILE --netns PATH [--config FILE] [--layout iptables|nft]
             program the pod's rules into the namespace once, as one transaction
  verify     --pod FILE --netns PATH [--config FILE] [--layout iptables|nft]
             exit 0 only if the namespace holds exactly the expected rules
  install    [--config FILE] [--cni-conf-dir DIR] [--cni-bin-dir DIR]
             copy the shim and chain meshcni into the node's CNI configuration
  uninstall  [--config FILE] [--cni-conf-dir DIR] [--cni-bin-dir DIR]
             remove exactly what install added
`;

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

const POD_FLAGS = { values: ['pod', 'config', 'layout', 'netns'] } as const;

/** The flags, settings, netns and plan shared by apply and verify. */
function podCommand(argv: string[], cmd: string): { netns: string; plan: ReturnType<ReturnType<typeof makePlanner>> } {
  const p = parseFlags(argv, POD_FLAGS, cmd);
  const settings = settingsFrom(p);
  const netns = required(p, 'netns', cmd);
  return { netns, plan: makePlanner(parseCaptureConfig(settings.capture))(readPod(required(p, 'pod', cmd))) };
}

async function rules(argv: string[]): Promise<number> {
  const p = parseFlags(argv, { values: ['pod', 'config', 'layout'] }, 'rules');
  const settings = settingsFrom(p);
  const plan = planPod(readPod(required(p, 'pod', 'rules')), parseCaptureConfig(settings.capture));
  if (!plan.capture) {
    process.stdout.write(`# not captured: ${plan.reason}\n`);
    return 0;
  }
  process.stdout.write(plan.text.endsWith('\n') ? plan.text : `${plan.text}\n`);
  return 0;
}

async function apply(argv: string[]): Promise<number> {
  const { netns, plan } = podCommand(argv, 'apply');
  if (!plan.capture) {
    process.stdout.write(`not captured, nothing programmed: ${plan.reason}\n`);
    return 0;
  }
  const t0 = performance.now();
  await applyPlan(netns, plan);
  const rules = plan.tables.reduce((n, t) => n + t.rules.length, 0);
  process.stdout.write(`programmed ${plan.tables.length} table(s), ${rules} rule(s) into ${netns} in ${(performance.now() - t0).toFixed(2)} ms (${plan.layout} layout, one transaction)\n`);
  return 0;
}

async function verify(argv: string[]): Promise<number> {
  const { netns, plan } = podCommand(argv, 'verify');
  if (!plan.capture) {
    process.stdout.write(`not captured: ${plan.reason}\n`);
    return 0;
  }
  const diffs = diffTables(plan.tables, await readTables(netns));
  if (diffs.length === 0) {
    process.stdout.write(`${netns} holds exactly the expected rules\n`);
    return 0;
  }
  process.stdout.write(`${netns} differs from the expected rules in ${diffs.length} place(s):\n${diffs.map((d) => `  ${d}`).join('\n')}\n`);
  return 1;
}

async function serve(argv: string[]): Promise<number> {
  const p = parseFlags(
    argv,
    { values: ['config', 'pods-dir', 'socket', 'cni-conf-dir', 'cni-bin-dir', 'state-dir', 'metrics-address', 'log-level', 'layout'], switches: ['install'] },
    'serve',
  );
  const settings = settingsFrom(p);
  const log = pino({ level: settings.logLevel, base: { component: 'meshcni-agent' } });
  const installer = settings.install ? await makeInstaller(settings, log) : undefined;
  const agent = new Agent(settings, log, installer ? { installer } : {});
  await agent.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down: finishing in-flight requests');
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      agent.stop().then(resolve, (e: unknown) => {
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
    socketPath: settings.socketPath,
    podIndexPath: join(settings.stateDir, INDEX_FILE_NAME),
    excludeNamespaces: [...parseCaptureConfig(settings.capture).excludeNamespaces],
    logLevel: settings.logLevel,
    log,
  };
}

async function makeInstaller(settings: AgentSettings, log: pino.Logger) {
  const { CniInstaller } = await import('../install/installer.js');
  return new CniInstaller(installerOptions(settings, log));
}

async function installCmd(argv: string[], remove: boolean): Promise<number> {
  const cmd = remove ? 'uninstall' : 'install';
  const p = parseFlags(argv, { values: ['config', 'cni-conf-dir', 'cni-bin-dir', 'socket', 'log-level'] }, cmd);
  const settings = settingsFrom(p);
  const log = pino({ level: settings.logLevel, base: { component: 'meshcni-install' } });
  const { runInstall, runUninstall } = await import('../install/installer.js');
  const opts = installerOptions(settings, log);
  if (remove) await runUninstall(opts);
  else await runInstall(opts);
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
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}' (try: meshcni-agent help)`);
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
