// The Helm chart in deploy/chart, through a real Helm (scripts/helm.ts): lint and template for the default and
// every platform profile, every rendered object checked against the Kubernetes API models, each value landing
// in every place that depends on it, and the values the agent cannot honour refused by name.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseSettings, type AgentSettings } from '../../src/agent/config.js';
import { CHART_DIR, helm, helmTemplate } from '../../scripts/helm.js';
import { validateObject } from './k8s-schema.js';

type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: any;
};

interface Render {
  docs: Doc[];
  ds: Doc;
  pod: any;
  agent: any;
  settings: AgentSettings;
  /** mountPath → hostPath of every hostPath volume the agent mounts. */
  hostPaths: Record<string, string>;
}

function render(set: Record<string, string> = {}, extra: string[] = []): Render {
  const docs = parseAllDocuments(helmTemplate(set, extra))
    .map((d) => d.toJS() as Doc)
    .filter((d) => d !== null);
  const ds = docs.find((d) => d.kind === 'DaemonSet')!;
  const cm = docs.find((d) => d.kind === 'ConfigMap')!;
  const pod = ds.spec.template.spec;
  const agent = pod.containers[0];
  const hostPaths: Record<string, string> = {};
  for (const m of agent.volumeMounts) {
    const v = pod.volumes.find((x: any) => x.name === m.name);
    if (v?.hostPath) hostPaths[m.mountPath] = v.hostPath.path;
  }
  const settings = parseSettings(parseYaml(cm.data['config.yaml']), 'chart config.yaml');
  return { docs, ds, pod, agent, settings, hostPaths };
}

const PROFILES = readdirSync(`${CHART_DIR}/files`)
  .map((f) => /^profile-(.+)\.yaml$/.exec(f)?.[1])
  .filter((p) => p !== undefined);
const RENDERED_PROFILES = ['', ...PROFILES];
/** The Multus CRD is no built-in API type: its known shape, checked by hand. */
function validateNad(d: Doc): string[] {
  const { apiVersion, kind: _kind, metadata, ...rest } = d;
  const problems = validateObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata }); // V1ObjectMeta's fields
  if (apiVersion !== 'k8s.cni.cncf.io/v1') problems.push(`apiVersion ${apiVersion}`);
  for (const k of Object.keys(rest)) if (k !== 'spec') problems.push(`unknown field ${k}`);
  return problems;
}

describe('helm lint', () => {
  it.each(RENDERED_PROFILES)('passes for profile %j', (profile) => {
    expect(helm(['lint', '--strict', CHART_DIR, '--set', `profile=${profile}`])).toMatch(
      /1 chart\(s\) linted, 0 chart\(s\) failed/,
    );
  });
});

const CLUSTER_SCOPED = new Set([
  'ClusterRole',
  'ClusterRoleBinding',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);

describe('helm template', () => {
  it('knows the platforms the issue lists, one file each', () => {
    expect(PROFILES.sort()).toEqual(['gke', 'k3d', 'k3s', 'microk8s', 'minikube', 'openshift']);
  });

  it.each(RENDERED_PROFILES)('renders profile %j into valid Kubernetes objects in the release namespace', (profile) => {
    const { docs } = render({ profile });
    const nad = profile === 'openshift' ? ['NetworkAttachmentDefinition/meshcni'] : [];
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual([
      'ClusterRole/meshcni-agent',
      'ClusterRoleBinding/meshcni-agent',
      'ConfigMap/meshcni-config',
      'DaemonSet/meshcni-agent',
      ...nad,
      'ServiceAccount/meshcni-agent',
      'ValidatingAdmissionPolicy/meshcni-agent-node-taint',
      'ValidatingAdmissionPolicyBinding/meshcni-agent-node-taint',
    ]);
    for (const d of docs) {
      if (d.kind === 'NetworkAttachmentDefinition') {
        expect(validateNad(d)).toEqual([]);
        expect(d.metadata.namespace).toBe('default'); // referable from every namespace under Multus isolation
      } else {
        expect(validateObject(d)).toEqual([]);
        if (!CLUSTER_SCOPED.has(d.kind)) expect(d.metadata.namespace).toBe('kube-system');
      }
    }
  });

  it('openshift: a standalone meshcni network in the Multus conf dir, its NetworkAttachmentDefinition, SELinux spc_t', () => {
    const { settings, docs, agent } = render({ profile: 'openshift' });
    expect(settings).toMatchObject({
      chained: false,
      cniConfDir: '/etc/cni/multus/net.d',
      cniConfFileName: 'meshcni.conf',
      cniBinDir: '/var/lib/cni/bin',
    });
    expect(docs.find((d) => d.kind === 'NetworkAttachmentDefinition')?.metadata.name).toBe('meshcni');
    expect(agent.securityContext.seLinuxOptions).toEqual({ type: 'spc_t' });
    expect(render().agent.securityContext.seLinuxOptions).toBeUndefined();
  });

  it.each(RENDERED_PROFILES)('profile %j mounts each host directory where the agent config says it is', (profile) => {
    const { settings, hostPaths } = render({ profile });
    expect(hostPaths[settings.cniConfDir]).toBe(settings.cniConfDir);
    expect(hostPaths[settings.cniBinDir]).toBe(settings.cniBinDir);
  });
});

describe('platform profiles', () => {
  it.each([
    ['', '/opt/cni/bin', '/etc/cni/net.d', '/var/run/netns'],
    ['gke', '/home/kubernetes/bin', '/etc/cni/net.d', '/var/run/netns'],
    ['k3s', '/var/lib/rancher/k3s/data/cni', '/var/lib/rancher/k3s/agent/etc/cni/net.d', '/var/run/netns'],
    ['k3d', '/bin', '/var/lib/rancher/k3s/agent/etc/cni/net.d', '/var/run/netns'],
    [
      'microk8s',
      '/var/snap/microk8s/current/opt/cni/bin',
      '/var/snap/microk8s/current/args/cni-network',
      '/var/run/netns',
    ],
    ['openshift', '/var/lib/cni/bin', '/etc/cni/multus/net.d', '/var/run/netns'],
    ['minikube', '/opt/cni/bin', '/etc/cni/net.d', '/var/run/docker/netns'],
  ])('profile %j: bin %s, conf %s, netns %s in the hostPaths and the agent config', (profile, bin, conf, netns) => {
    const { settings, hostPaths } = render({ profile });
    expect({ bin: settings.cniBinDir, conf: settings.cniConfDir }).toEqual({ bin, conf });
    expect(hostPaths).toEqual({
      [conf]: conf,
      [bin]: bin,
      [netns]: netns,
      '/var/run/meshcni': '/var/run/meshcni',
      '/host/proc': '/proc',
    });
  });

  it('set only the platform-dependent values', () => {
    const platform = Object.keys(parseYaml(readFileSync(`${CHART_DIR}/files/platform-defaults.yaml`, 'utf8')));
    for (const p of PROFILES) {
      const keys = Object.keys(parseYaml(readFileSync(`${CHART_DIR}/files/profile-${p}.yaml`, 'utf8')));
      expect(platform, p).toEqual(expect.arrayContaining(keys));
    }
  });

  it('lets a value the user sets win over the profile', () => {
    const { settings, hostPaths } = render({ profile: 'k3s', cniBinDir: '/usr/libexec/cni' });
    expect(settings.cniBinDir).toBe('/usr/libexec/cni');
    expect(hostPaths['/usr/libexec/cni']).toBe('/usr/libexec/cni');
    expect(settings.cniConfDir).toBe('/var/lib/rancher/k3s/agent/etc/cni/net.d');
  });
});

describe('values', () => {
  it('renders the node-taint admission policy for the configured taint key, and leaves it out when asked', () => {
    const policy = (r: Render) => r.docs.find((d) => d.kind === 'ValidatingAdmissionPolicy');
    const keyed = policy(render({ 'readinessTaint.key': 'example.com/mesh-not-ready' }))!;
    expect(JSON.stringify(keyed.spec.validations)).toContain("t.key != 'example.com/mesh-not-ready'");
    expect(keyed.spec.matchConditions[0].expression).toContain("'system:serviceaccount:kube-system:meshcni-agent'");
    const off = render({ 'readinessTaint.admissionPolicy': 'false' });
    expect(policy(off)).toBeUndefined();
    expect(off.docs.some((d) => d.kind === 'ValidatingAdmissionPolicyBinding')).toBe(false);
  });

  it('lands each pod-level value on the DaemonSet', () => {
    const { ds, pod, agent } = render({}, [
      '--set',
      'image.repository=localhost/meshcni',
      '--set',
      'image.tag=dev',
      '--set',
      'image.pullPolicy=Never',
      '--set',
      'priorityClassName=mesh-critical',
      '--set',
      'terminationGracePeriodSeconds=45',
      '--set',
      'updateStrategy.rollingUpdate.maxUnavailable=25%',
      '--set',
      'podLabels.team=mesh',
      '--set',
      'podAnnotations.owner=net',
      '--set',
      'nodeSelector.pool=mesh',
      '--set',
      'tolerations[0].key=dedicated',
      '--set',
      'tolerations[0].operator=Exists',
      '--set',
      'resources.requests.cpu=10m',
      '--set',
      'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=mesh',
      '--set',
      'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists',
    ]);
    expect(validateObject(ds)).toEqual([]);
    expect([agent.image, agent.imagePullPolicy]).toEqual(['localhost/meshcni:dev', 'Never']);
    expect(pod.priorityClassName).toBe('mesh-critical');
    expect(pod.terminationGracePeriodSeconds).toBe(45);
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%' } });
    expect(ds.spec.template.metadata.labels).toMatchObject({ team: 'mesh', ...ds.spec.selector.matchLabels });
    expect(ds.spec.template.metadata.annotations.owner).toBe('net');
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', pool: 'mesh' });
    expect(pod.tolerations).toEqual([{ key: 'dedicated', operator: 'Exists' }]);
    expect(agent.resources.requests.cpu).toBe('10m');
    expect(
      pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0],
    ).toEqual({ key: 'mesh', operator: 'Exists' });
  });

  it("tags the image with the chart's appVersion by default", () => {
    const appVersion = (parseYaml(helm(['show', 'chart', CHART_DIR])) as { appVersion: string }).appVersion;
    expect(render().agent.image).toBe(`ghcr.io/meshcni/meshcni:${appVersion}`);
  });

  it("names the image `npm run image` builds: appVersion is package.json's version", () => {
    const version = (
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
    const script = new URL('../../scripts/build-image.sh', import.meta.url).pathname;
    const built = execFileSync(
      'bash',
      ['-c', `cd "$(dirname "$1")/.." && eval "$(grep '^IMAGE=' "$1")" && echo "$IMAGE"`, 'sh', script],
      { encoding: 'utf8' },
    );
    expect(built.trim()).toBe(`ghcr.io/meshcni/meshcni:${version}`);
    expect(render().agent.image).toBe(built.trim());
  });

  it.each([
    [
      'excludeNamespaces',
      ['--set-json', 'excludeNamespaces=["kube-system","linkerd"]'],
      (s: AgentSettings) => s.capture.excludeNamespaces,
      ['kube-system', 'linkerd'],
    ],
    ['layout', ['--set', 'layout=nft'], (s: AgentSettings) => s.capture.layout, 'nft'],
    ['istioVersion', ['--set', 'istioVersion=auto'], (s: AgentSettings) => s.capture.istioVersion, 'auto'],
    ['istioVersion 1.30', ['--set', 'istioVersion=1.30'], (s: AgentSettings) => s.capture.istioVersion, '1.30'],
    ['repairPolicy', ['--set', 'repairPolicy=report'], (s: AgentSettings) => s.repairPolicy, 'report'],
    ['logLevel', ['--set', 'logLevel=debug'], (s: AgentSettings) => s.logLevel, 'debug'],
    [
      'cniConfFileName',
      ['--set', 'cniConfFileName=10-calico.conflist'],
      (s: AgentSettings) => s.cniConfFileName,
      '10-calico.conflist',
    ],
    [
      'readinessTaint.enabled',
      ['--set', 'readinessTaint.enabled=false'],
      (s: AgentSettings) => s.removeReadinessTaint,
      false,
    ],
    [
      'readinessTaint.key',
      ['--set', 'readinessTaint.key=example.com/cni'],
      (s: AgentSettings) => s.readinessTaintKey,
      'example.com/cni',
    ],
    [
      'reconcileIntervalSeconds',
      ['--set', 'reconcileIntervalSeconds=0'],
      (s: AgentSettings) => s.reconcileIntervalSeconds,
      0,
    ],
    ['uninstallOnShutdown', ['--set', 'uninstallOnShutdown=true'], (s: AgentSettings) => s.uninstallOnShutdown, true],
    ['ownedConfig', ['--set', 'ownedConfig=true'], (s: AgentSettings) => s.ownedConfigFileName, '02-meshcni.conflist'],
    [
      'ownedConfigFileName',
      ['--set', 'ownedConfig=true', '--set', 'ownedConfigFileName=00-mesh.conflist'],
      (s: AgentSettings) => s.ownedConfigFileName,
      '00-mesh.conflist',
    ],
    ['ownedConfig left false', [], (s: AgentSettings) => s.ownedConfigFileName, ''],
  ])('%s lands in the agent config', (_name, extra, read, want) => {
    expect(read(render({}, extra).settings)).toEqual(want);
  });

  it('moves the probes and the scrape port with metrics.adminPort and metrics.scrapePort', () => {
    const { settings, agent, ds } = render({ 'metrics.adminPort': '16120', 'metrics.scrapePort': '16121' });
    expect([settings.metricsAddress, settings.metricsScrapeAddress]).toEqual(['127.0.0.1:16120', '0.0.0.0:16121']);
    expect([agent.readinessProbe.httpGet.port, agent.livenessProbe.httpGet.port]).toEqual([16120, 16120]);
    expect(agent.ports).toEqual([{ name: 'metrics', containerPort: 16121, protocol: 'TCP' }]);
    expect(ds.spec.template.metadata.annotations['prometheus.io/port']).toBe('16121');
  });

  it('keeps metrics on loopback with metrics.scrape=false: no scrape address, port or annotations', () => {
    const { settings, agent, ds } = render({ 'metrics.scrape': 'false' });
    expect(settings.metricsScrapeAddress).toBe('');
    expect(agent.ports).toBeUndefined();
    expect(Object.keys(ds.spec.template.metadata.annotations)).toEqual(['checksum/config']);
  });

  it('renders the pod-delete RBAC only with repairPolicy=delete', () => {
    const names = (r: Render): string[] =>
      r.docs
        .filter((d) => d.kind.startsWith('ClusterRole'))
        .map((d) => `${d.kind}/${d.metadata.name}`)
        .sort();
    expect(names(render())).toEqual(['ClusterRole/meshcni-agent', 'ClusterRoleBinding/meshcni-agent']);
    expect(names(render({ repairPolicy: 'delete' }))).toEqual([
      'ClusterRole/meshcni-agent',
      'ClusterRole/meshcni-agent-repair-delete',
      'ClusterRoleBinding/meshcni-agent',
      'ClusterRoleBinding/meshcni-agent-repair-delete',
    ]);
  });

  it('rolls the DaemonSet when the config changes (checksum/config), and only then', () => {
    const sum = (r: Render): string => r.ds.spec.template.metadata.annotations['checksum/config'];
    expect(sum(render())).toMatch(/^[0-9a-f]{64}$/);
    expect(sum(render({ logLevel: 'debug' }))).not.toBe(sum(render()));
    expect(sum(render({ 'image.tag': 'other' }))).toBe(sum(render()));
  });
});

describe('values the agent cannot honour', () => {
  it.each([
    ['an unknown profile', { profile: 'eks' }, /profile "eks": no such profile/],
    [
      'chained=false with the default provider',
      { chained: 'false' },
      /chained false with provider "default": want chained: true with provider: default, or chained: false with provider: multus/,
    ],
    ['provider=multus while chained', { provider: 'multus' }, /chained true with provider "multus": want/],
    [
      'standalone without its own .conf',
      { chained: 'false', provider: 'multus' },
      /cniConfFileName "": chained: false needs the name of meshcni's own .conf/,
    ],
    [
      'an owned conflist in standalone mode',
      { profile: 'openshift', ownedConfig: 'true' },
      /ownedConfig true with chained: false/,
    ],
    ['an unknown provider', { provider: 'calico' }, /provider "calico": want default or multus/],
    [
      'an ownedConfigFileName that is no .conflist',
      { ownedConfig: 'true', ownedConfigFileName: '02-meshcni.conf' },
      /ownedConfigFileName "02-meshcni.conf": want a .conflist/,
    ],
    ['a relative cniBinDir', { cniBinDir: 'opt/cni/bin' }, /cniBinDir "opt\/cni\/bin": want an absolute host path/],
    ['a relative cniNetnsDir', { cniNetnsDir: 'run/netns' }, /cniNetnsDir "run\/netns": want an absolute host path/],
    [
      'a path as cniConfFileName',
      { cniConfFileName: '/etc/cni/net.d/10.conflist' },
      /cniConfFileName "\/etc\/cni\/net.d\/10.conflist": want a file name/,
    ],
    ['an unknown layout', { layout: 'ipvs' }, /layout "ipvs": want iptables or nft/],
    ['an unknown istioVersion', { istioVersion: '1.22' }, /istioVersion "1.22": want '1.17', '1.30' or 'auto'/],
    ['an unknown repairPolicy', { repairPolicy: 'fix' }, /repairPolicy "fix": want capture/],
    ['an unknown logLevel', { logLevel: 'loud' }, /logLevel "loud": want trace/],
  ])('refuses %s, naming the value', (_what, set, message) => {
    expect(() => helmTemplate(set)).toThrow(message);
  });

  it('refuses an unquoted istioVersion (YAML reads 1.30 as the number 1.3), saying so', () => {
    expect(() => helmTemplate({}, ['--set-json', 'istioVersion=1.30'])).toThrow(/istioVersion "1.3": .*quoted/);
  });
});
