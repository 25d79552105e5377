// The deploy manifests, parsed: valid Kubernetes API objects, applied as a set by kustomization.yaml,
// and the fields that decide whether meshcni works, how it is observed and how much it may do.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseSettings } from '../../src/agent/config.js';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { renderManifests } from '../../scripts/render-manifests.js';
import { validateObject } from './k8s-schema.js';

const DEPLOY = new URL('../../deploy/', import.meta.url).pathname;

type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: any;
};

function load(file: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(DEPLOY + file, 'utf8'));
  for (const d of docs) expect(d.errors, `${file}: ${d.errors.join('; ')}`).toEqual([]);
  return docs.map((d) => d.toJS() as Doc).filter((d) => d !== null);
}

function one(file: string, kind: string, name?: string): Doc {
  const found = load(file).filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  expect(found, `${kind} ${name ?? ''} in ${file}`).toHaveLength(1);
  return found[0]!;
}

const ds = one('daemonset.yaml', 'DaemonSet');
const pod = ds.spec.template.spec;
const agent = pod.containers.find((c: { name: string }) => c.name === 'agent');
const sa = one('serviceaccount.yaml', 'ServiceAccount');
const cm = one('configmap.yaml', 'ConfigMap');
const settingsDoc = parseYaml(cm.data['config.yaml']) as Record<string, unknown>;
const settings = parseSettings(settingsDoc, 'configmap.yaml config.yaml');

const MANIFESTS = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');

describe('every manifest', () => {
  it.each(MANIFESTS)('%s parses into named Kubernetes objects', (file) => {
    const docs = load(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(d.apiVersion, file).toBeTruthy();
      expect(d.kind, file).toBeTruthy();
      expect(d.metadata.name, file).toMatch(/^[a-z0-9-]+$/);
      const clusterScoped = d.kind.startsWith('Cluster') || d.kind.startsWith('ValidatingAdmissionPolicy');
      if (!clusterScoped) expect(d.metadata.namespace, `${file} ${d.kind}`).toBe('kube-system');
    }
  });

  it.each(MANIFESTS)('%s holds only known fields of the right types (Kubernetes API models)', (file) => {
    for (const d of load(file)) expect(validateObject(d)).toEqual([]);
  });
});

describe('the Kubernetes API type check', () => {
  /** The real DaemonSet with one change made by `edit`. */
  const mutated = (edit: (d: any) => void): Doc => {
    const d = structuredClone(ds);
    edit(d);
    return d;
  };

  it.each([
    [
      'an unknown container field',
      (d: any) => (d.spec.template.spec.containers[0].imagePullPolcy = 'Always'),
      /containers\[0\]\.imagePullPolcy: unknown field of V1Container/,
    ],
    [
      'an unknown top-level field',
      (d: any) => (d.specs = {}),
      /DaemonSet\/meshcni-agent\.specs: unknown field of V1DaemonSet/,
    ],
    [
      'a string for a boolean',
      (d: any) => (d.spec.template.spec.hostNetwork = 'true'),
      /spec\.hostNetwork: want true or false, got string "true"/,
    ],
    [
      'a boolean label value (unquoted false)',
      (d: any) => (d.spec.template.metadata.labels['sidecar.istio.io/inject'] = false),
      /labels\.sidecar\.istio\.io\/inject: want a string, got boolean false/,
    ],
    [
      'a fractional port',
      (d: any) => (d.spec.template.spec.containers[0].ports[0].containerPort = 15121.5),
      /containerPort: want an integer/,
    ],
    [
      'an object for a list',
      (d: any) => (d.spec.template.spec.tolerations = { operator: 'Exists' }),
      /tolerations: want Array<V1Toleration>, got an object/,
    ],
    [
      'a list for an int-or-string',
      (d: any) => (d.spec.template.spec.containers[0].readinessProbe.httpGet.port = [15120]),
      /httpGet\.port: want an integer or a string, got an array/,
    ],
  ])('rejects %s, naming the path', (_what, edit, message) => {
    const problems = validateObject(mutated(edit));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
  });

  it('rejects a kind that is no Kubernetes API type', () => {
    expect(validateObject({ apiVersion: 'apps/v1', kind: 'DaemonSets', metadata: { name: 'x' } })).toEqual([
      'apps/v1 DaemonSets: no such Kubernetes API type (V1DaemonSets)',
    ]);
  });
});

describe('the kustomize manifests', () => {
  // The guard for one source of truth: a change made here and not in deploy/chart fails this test.
  it.each([...renderManifests()])("%s is exactly the chart's default render (npm run deploy:render)", (file, text) => {
    expect(readFileSync(DEPLOY + file, 'utf8')).toBe(text);
  });

  it('has no file the chart does not render', () => {
    expect(MANIFESTS.sort()).toEqual([...renderManifests().keys()].sort());
  });
});

describe('kustomization.yaml', () => {
  const k = parseYaml(readFileSync(DEPLOY + 'kustomization.yaml', 'utf8')) as {
    apiVersion: string;
    kind: string;
    resources: string[];
  };

  it('lists every default manifest, and not the optional pod-delete RBAC', () => {
    expect(k).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization' });
    expect(Object.keys(k).sort()).toEqual(['apiVersion', 'kind', 'resources']);
    expect([...k.resources].sort()).toEqual(MANIFESTS.filter((f) => f !== 'rbac-repair-delete.yaml').sort());
  });
});

describe('daemonset.yaml', () => {
  it('runs on the host network on every node at node-critical priority', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
  });

  it('runs only on Linux nodes', () => {
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
  });

  it("opts the agent's own pods out of sidecar injection", () => {
    expect(ds.spec.template.metadata.labels['sidecar.istio.io/inject']).toBe('false');
  });

  it("is scraped by Prometheus on the ConfigMap's metricsScrapeAddress, /metrics only", () => {
    const port = settings.metricsScrapeAddress.split(':').pop();
    const { 'checksum/config': _checksum, ...annotations } = ds.spec.template.metadata.annotations;
    expect(annotations).toEqual({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': port,
      'prometheus.io/path': '/metrics',
    });
    expect(agent.ports).toEqual([{ name: 'metrics', containerPort: Number(port), protocol: 'TCP' }]);
    // The probes stay on the loopback admin address, not on the scrape port.
    expect(settings.metricsAddress).toMatch(/^127\.0\.0\.1:/);
    expect(settings.metricsScrapeAddress).not.toBe(settings.metricsAddress);
  });

  it('runs `meshcni-agent serve` with the ConfigMap mounted where --config points', () => {
    expect([...agent.command, ...agent.args]).toEqual([
      'meshcni-agent',
      'serve',
      '--config',
      '/etc/meshcni/config.yaml',
    ]);
    const vol = pod.volumes.find((v: any) => v.configMap?.name === cm.metadata.name);
    expect(vol).toBeDefined();
    expect(agent.volumeMounts).toContainEqual({ name: vol.name, mountPath: '/etc/meshcni', readOnly: true });
    expect(Object.keys(cm.data)).toEqual(['config.yaml']);
  });

  it('asks for NET_ADMIN, SYS_ADMIN and SYS_PTRACE as root instead of full privilege, without hostPID', () => {
    const sc = agent.securityContext;
    expect(sc.privileged ?? false).toBe(false);
    expect(sc.runAsUser).toBe(0);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(['NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE']);
    expect(pod.securityContext?.privileged).toBeUndefined();
    expect(pod.hostPID ?? false).toBe(false);
  });

  it('mounts the host paths the installer, the shim and setns use, at the same paths', () => {
    const hostPaths = new Map<string, { path: string; propagation?: string }>();
    for (const m of agent.volumeMounts) {
      const v = pod.volumes.find((x: any) => x.name === m.name);
      if (v?.hostPath && m.mountPath !== '/host/proc')
        hostPaths.set(m.mountPath, { path: v.hostPath.path, propagation: m.mountPropagation });
    }
    expect(Object.fromEntries(hostPaths)).toEqual({
      '/etc/cni/net.d': { path: '/etc/cni/net.d', propagation: undefined },
      '/opt/cni/bin': { path: '/opt/cni/bin', propagation: undefined },
      '/var/run/netns': { path: '/var/run/netns', propagation: 'HostToContainer' },
      '/var/run/meshcni': { path: '/var/run/meshcni', propagation: undefined },
    });
    // The shim runs on the host: the socket and CNI dirs in the config must be host-visible as is.
    expect(hostPaths.get(settings.cniConfDir)?.path).toBe(settings.cniConfDir);
    expect(hostPaths.get(settings.cniBinDir)?.path).toBe(settings.cniBinDir);
    expect(hostPaths.get(dirname(settings.socketPath))?.path).toBe(dirname(settings.socketPath));
  });

  it("mounts the host's /proc read-only at the ConfigMap's procRoot (capture in place)", () => {
    const m = agent.volumeMounts.find((x: any) => x.mountPath === settings.procRoot);
    expect(settings.procRoot).toBe('/host/proc');
    expect(m).toMatchObject({ readOnly: true });
    expect(m.mountPropagation).toBeUndefined();
    expect(pod.volumes.find((x: any) => x.name === m.name).hostPath).toEqual({ path: '/proc', type: 'Directory' });
  });

  it('passes the node name from the downward API', () => {
    expect(agent.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
  });

  it("probes /readyz and /healthz on the ConfigMap's metricsAddress", () => {
    const [host, port] = settings.metricsAddress.split(':');
    expect(agent.readinessProbe.httpGet).toEqual({ host, port: Number(port), path: '/readyz' });
    expect(agent.livenessProbe.httpGet).toEqual({ host, port: Number(port), path: '/healthz' });
  });

  it('uses the ServiceAccount from serviceaccount.yaml, in its namespace', () => {
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(ds.metadata.namespace).toBe(sa.metadata.namespace);
  });

  it('sets resource requests and a memory limit', () => {
    expect(agent.resources.requests.cpu).toBeTruthy();
    expect(agent.resources.requests.memory).toBeTruthy();
    expect(agent.resources.limits.memory).toBeTruthy();
  });
});

describe('configmap.yaml', () => {
  it('holds a config.yaml the agent accepts, with every documented key', () => {
    expect(Object.keys(settingsDoc).sort()).toEqual(
      [
        'excludeNamespaces',
        'layout',
        'istioVersion',
        'nftSets',
        'dualStack',
        'socketPath',
        'install',
        'cniConfDir',
        'cniBinDir',
        'metricsAddress',
        'metricsScrapeAddress',
        'logLevel',
        'repairPolicy',
        'reconcileIntervalSeconds',
        'uninstallOnShutdown',
        'removeReadinessTaint',
        'readinessTaintKey',
        'uninstallOnRemoval',
        'procRoot',
      ].sort(),
    );
    expect(settings).toMatchObject({
      install: true,
      repairPolicy: 'capture',
      metricsAddress: '127.0.0.1:15120',
      metricsScrapeAddress: '0.0.0.0:15121',
      removeReadinessTaint: true,
      uninstallOnRemoval: true,
    });
    expect(parseCaptureConfig(settings.capture)).toMatchObject({
      layout: 'iptables',
      istioVersion: '1.17',
      excludeNamespaces: ['kube-system', 'istio-system'],
    });
  });
});

describe('rbac.yaml and rbac-repair-delete.yaml', () => {
  const roles = [...load('rbac.yaml'), ...load('rbac-repair-delete.yaml')].filter((d) => d.kind === 'ClusterRole');
  const bindings = [...load('rbac.yaml'), ...load('rbac-repair-delete.yaml')].filter(
    (d) => d.kind === 'ClusterRoleBinding',
  );

  it('grants the agent only get/list/watch on pods, get/patch on nodes (its taint), create on events and get on daemonsets by default', () => {
    expect(load('rbac.yaml').map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'ClusterRole/meshcni-agent',
      'ClusterRoleBinding/meshcni-agent',
    ]);
    expect(one('rbac.yaml', 'ClusterRole', 'meshcni-agent').rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      { apiGroups: ['apps'], resources: ['daemonsets'], verbs: ['get'] },
    ]);
  });

  it('keeps pod delete in its own file, marked optional for the delete repair policy', () => {
    const withDelete = roles.filter((r) => r.rules.some((rule: any) => rule.verbs.includes('delete')));
    expect(withDelete.map((r) => r.metadata.name)).toEqual(['meshcni-agent-repair-delete']);
    expect(one('rbac-repair-delete.yaml', 'ClusterRole').rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['delete'] },
    ]);
    expect(one('rbac-repair-delete.yaml', 'ClusterRoleBinding').roleRef.name).toBe('meshcni-agent-repair-delete');
    for (const d of load('rbac-repair-delete.yaml'))
      expect(d.metadata.labels?.['meshcni.io/optional']).toBe('repair-policy-delete');
    expect(readFileSync(DEPLOY + 'rbac-repair-delete.yaml', 'utf8')).toMatch(/OPTIONAL.*repairPolicy: delete/s);
  });

  it('has no wildcards and no resources beyond pods, nodes, events and daemonsets', () => {
    for (const r of roles) {
      for (const rule of r.rules) {
        expect([['pods'], ['nodes'], ['events'], ['daemonsets']]).toContainEqual(rule.resources);
        expect([...rule.apiGroups, ...rule.resources, ...rule.verbs]).not.toContain('*');
      }
    }
  });

  it('binds each role to the agent ServiceAccount', () => {
    expect(bindings.map((b) => b.roleRef.name).sort()).toEqual(roles.map((r) => r.metadata.name).sort());
    for (const b of bindings) {
      expect(b.roleRef).toMatchObject({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole' });
      expect(b.subjects).toEqual([
        { kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace },
      ]);
    }
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(DEPLOY + 'Dockerfile', 'utf8');

  // What the image holds and that it runs is checked on the built image in test/image.
  it('takes its bases as build arguments, defaulting to a supported Node LTS on bookworm', () => {
    expect(text).toMatch(/^ARG BASE=node:(22|24)-bookworm-slim$/m);
    expect(text).toMatch(/^ARG BUILDER=node:(22|24)-bookworm$/m);
    expect(text.match(/^FROM .*/gm)).toEqual(['FROM ${BUILDER} AS build', 'FROM ${BASE}']);
  });

  it('starts `meshcni-agent serve` by default', () => {
    expect(text).toMatch(/^ENTRYPOINT \["meshcni-agent"\]$/m);
    expect(text).toMatch(/^CMD \["serve"\]$/m);
  });
});
