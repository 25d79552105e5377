// The deploy manifests, parsed: the fields that decide whether meshcni works and how much it may do.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseSettings } from '../../src/agent/config.js';
import { parseCaptureConfig } from '../../src/capture/config.js';

const DEPLOY = new URL('../../deploy/', import.meta.url).pathname;

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

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

describe('every manifest', () => {
  it.each(readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml')))('%s parses into named Kubernetes objects', (file) => {
    const docs = load(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(d.apiVersion, file).toBeTruthy();
      expect(d.kind, file).toBeTruthy();
      expect(d.metadata.name, file).toMatch(/^[a-z0-9-]+$/);
      if (!d.kind.startsWith('Cluster')) expect(d.metadata.namespace, `${file} ${d.kind}`).toBe('kube-system');
    }
  });
});

describe('daemonset.yaml', () => {
  it('runs on the host network on every node at node-critical priority', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    expect(ds.spec.selector.matchLabels).toEqual(ds.spec.template.metadata.labels);
  });

  it('runs `meshcni-agent serve` with the ConfigMap mounted where --config points', () => {
    expect([...agent.command, ...agent.args]).toEqual(['meshcni-agent', 'serve', '--config', '/etc/meshcni/config.yaml']);
    const vol = pod.volumes.find((v: any) => v.configMap?.name === cm.metadata.name);
    expect(vol).toBeDefined();
    expect(agent.volumeMounts).toContainEqual({ name: vol.name, mountPath: '/etc/meshcni', readOnly: true });
    expect(Object.keys(cm.data)).toEqual(['config.yaml']);
  });

  it('asks for NET_ADMIN and SYS_ADMIN as root instead of full privilege', () => {
    const sc = agent.securityContext;
    expect(sc.privileged ?? false).toBe(false);
    expect(sc.runAsUser).toBe(0);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(['NET_ADMIN', 'SYS_ADMIN']);
    expect(pod.securityContext?.privileged).toBeUndefined();
    expect(pod.hostPID ?? false).toBe(false);
  });

  it('mounts the host paths the installer, the shim and setns use, at the same paths', () => {
    const hostPaths = new Map<string, { path: string; propagation?: string }>();
    for (const m of agent.volumeMounts) {
      const v = pod.volumes.find((x: any) => x.name === m.name);
      if (v?.hostPath) hostPaths.set(m.mountPath, { path: v.hostPath.path, propagation: m.mountPropagation });
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
        'excludeNamespaces', 'layout', 'nftSets', 'dualStack', 'socketPath', 'install', 'cniConfDir', 'cniBinDir',
        'metricsAddress', 'logLevel', 'repairPolicy', 'reconcileIntervalSeconds', 'uninstallOnShutdown',
        'removeReadinessTaint', 'readinessTaintKey', 'uninstallOnRemoval',
      ].sort(),
    );
    expect(settings).toMatchObject({ install: true, repairPolicy: 'capture', metricsAddress: '127.0.0.1:15120', removeReadinessTaint: true, uninstallOnRemoval: true });
    expect(parseCaptureConfig(settings.capture)).toMatchObject({ layout: 'iptables', excludeNamespaces: ['kube-system', 'istio-system'] });
  });
});

describe('rbac.yaml', () => {
  const docs = load('rbac.yaml');
  const roles = docs.filter((d) => d.kind === 'ClusterRole');
  const bindings = docs.filter((d) => d.kind === 'ClusterRoleBinding');

  it('grants the agent only get/list/watch on pods, get/patch on nodes (its taint) and get on daemonsets', () => {
    expect(one('rbac.yaml', 'ClusterRole', 'meshcni-agent').rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'patch'] },
      { apiGroups: ['apps'], resources: ['daemonsets'], verbs: ['get'] },
    ]);
  });

  it('keeps pod delete in a separate role marked optional for the delete repair policy', () => {
    const withDelete = roles.filter((r) => r.rules.some((rule: any) => rule.verbs.includes('delete')));
    expect(withDelete.map((r) => r.metadata.name)).toEqual(['meshcni-agent-repair-delete']);
    expect(withDelete[0]!.rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['delete'] }]);
    expect(withDelete[0]!.metadata.labels?.['meshcni.io/optional']).toBe('repair-policy-delete');
    expect(readFileSync(DEPLOY + 'rbac.yaml', 'utf8')).toMatch(/OPTIONAL:.*repairPolicy: delete/s);
  });

  it('has no wildcards and no resources beyond pods, nodes and daemonsets', () => {
    for (const r of roles) {
      for (const rule of r.rules) {
        expect([['pods'], ['nodes'], ['daemonsets']]).toContainEqual(rule.resources);
        expect([...rule.apiGroups, ...rule.resources, ...rule.verbs]).not.toContain('*');
      }
    }
  });

  it('binds each role to the agent ServiceAccount', () => {
    expect(bindings.map((b) => b.roleRef.name).sort()).toEqual(roles.map((r) => r.metadata.name).sort());
    for (const b of bindings) {
      expect(b.roleRef).toMatchObject({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole' });
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    }
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(DEPLOY + 'Dockerfile', 'utf8');

  it('builds on node:20-bookworm with the shim toolchain and runs on the slim image', () => {
    expect(text.match(/^FROM .*/gm)).toEqual(['FROM node:20-bookworm AS build', 'FROM node:20-bookworm-slim']);
    expect(text).toMatch(/apt-get install .*build-essential.*libjson-c-dev/);
    expect(text).toMatch(/RUN npm ci/);
    expect(text).toMatch(/npm prune --omit=dev/);
  });

  it('ships dist, node_modules and build/Release and starts `meshcni-agent serve`', () => {
    for (const what of ['/app/dist', '/app/node_modules', '/app/build/Release/meshcni ']) expect(text).toContain(`COPY --from=build ${what}`);
    expect(text).toMatch(/^ENTRYPOINT \["meshcni-agent", "serve"\]$/m);
  });
});
