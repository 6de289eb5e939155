/**
 * The leased pair's deploy files (`remusd node`, DESIGN.md "Fencing and
 * roles"): the Kubernetes overlay deploy/kubernetes/node (rendered here as
 * kustomize would: the parent base, its objects deleted or patched, the new
 * resources), the compose override deploy/compose.node.yaml on top of
 * compose.yaml, Prometheus's config for it, and the systemd node unit's
 * restart policy. Command lines parse with the daemon's own option parser
 * (the node spec of src/cli/specs.ts, or the provisional one of lib.ts until
 * it exists), and the --lease values with src/lease/spec.ts.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parse as parseYaml } from "yaml";
import { DEFAULT_PORTS, HEALTH_PATH, READY_PATH } from "../../src/contract.js";
import { parseLeaseSpec } from "../../src/lease/spec.js";
import {
  arr,
  DEPLOY,
  envNamesOf,
  hostPort,
  interpolate,
  obj,
  parseCommandLine,
  parseUnit,
  readText,
  readYaml,
  readYamlDocs,
  runTool,
  str,
} from "./lib.js";

type Obj = Record<string, unknown>;
const K8S = "deploy/kubernetes";
const OVERLAY = `${K8S}/node`;

// ---- a small kustomize: resources (files and folders), delete and merge patches ----

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const kindName = (d: Obj): string =>
  `${str(d.kind, "kind")}/${str(obj(d.metadata, "metadata").name, "name")}`;

/** Strategic merge as far as these files use it: mappings merge, null deletes, lists replace. */
function merge(base: unknown, patch: unknown): unknown {
  if (!isObj(base) || !isObj(patch)) return patch;
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(base[k], v);
  }
  return out;
}

function render(dir: string): Obj[] {
  const k = obj(readYaml(`${dir}/kustomization.yaml`), `${dir}/kustomization.yaml`);
  let docs: Obj[] = [];
  for (const r of arr(k.resources, "resources").map(String)) {
    const path = join(dir, r);
    if (readdirSync(join(DEPLOY, "..", dir)).includes(r) && !/\.ya?ml$/.test(r)) docs.push(...render(path));
    else if (r === "..") docs.push(...render(join(dir, "..")));
    else docs.push(...readYamlDocs(path).map((d) => obj(d, path)));
  }
  for (const p of arr(k.patches ?? [], "patches")) {
    const patch = obj(parseYaml(str(obj(p, "patch").patch, "patch")), "patch");
    const target = kindName(patch);
    const i = docs.findIndex((d) => kindName(d) === target);
    assert.ok(i >= 0, `${dir}: the patch's target ${target} exists`);
    if (patch.$patch === "delete") docs = docs.filter((_, j) => j !== i);
    else docs[i] = obj(merge(docs[i], patch), target);
  }
  return docs;
}

const docs = render(OVERLAY);
const find = (kind: string, name: string): Obj => {
  const d = docs.find((x) => kindName(x) === `${kind}/${name}`);
  assert.ok(d, `${kind} ${name}`);
  return d;
};
const spec = (d: Obj): Obj => obj(d.spec, "spec");
const template = (d: Obj): Obj => obj(spec(d).template, "template");
const labelsOf = (o: Obj): Record<string, string> =>
  obj(obj(o.metadata, "metadata").labels ?? {}, "labels") as Record<string, string>;
const selects = (sel: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v);

const nodes = find("StatefulSet", "remusd-node");
const nodePod = template(nodes);
const nodeContainer = obj(arr(spec(nodePod).containers, "containers")[0], "container");
const configMap = obj(find("ConfigMap", "remusd-config").data, "data") as Record<string, string>;

/** A pod's args with $(VAR) from its env (Kubernetes expands them), parsed with the ConfigMap as environment. */
function nodeCommand(podName: string): ReturnType<typeof parseCommandLine> {
  const args = arr(nodeContainer.args, "args").map((a) => String(a).replaceAll("$(POD_NAME)", podName));
  const own = envNamesOf("node");
  const env = Object.fromEntries(Object.entries(configMap).filter(([k]) => own.has(k)));
  return parseCommandLine(args, env);
}

describe("Kubernetes: the leased pair (deploy/kubernetes/node)", () => {
  test("every file of the overlay is a resource; the fixed-role daemons are gone", () => {
    const k = obj(readYaml(`${OVERLAY}/kustomization.yaml`), "kustomization");
    const files = readdirSync(join(DEPLOY, "kubernetes", "node")).filter(
      (f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml",
    );
    assert.deepEqual(new Set(files), new Set(arr(k.resources, "resources").filter((r) => r !== "..")));
    assert.equal(k.namespace, "remusd");
    for (const gone of ["Pod/remusd-primary", "Deployment/remusd-backup", "Service/remusd-backup"])
      assert.ok(!docs.some((d) => kindName(d) === gone), `${gone} is deleted`);
    for (const d of docs) assert.match(kindName(d), /^[A-Za-z]+\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });

  test("two symmetric nodes in a StatefulSet that keeps them on different Kubernetes nodes", () => {
    const s = spec(nodes);
    assert.equal(s.replicas, 2);
    assert.equal(s.serviceName, "remusd-node");
    const labels = labelsOf(nodePod);
    assert.ok(selects(obj(s.selector, "selector").matchLabels as Record<string, string>, labels));
    const anti = obj(obj(spec(nodePod).affinity, "affinity").podAntiAffinity, "podAntiAffinity");
    const terms = arr(anti.requiredDuringSchedulingIgnoredDuringExecution, "required anti-affinity");
    assert.ok(
      terms.some((t) => {
        const term = obj(t, "term");
        const sel = obj(obj(term.labelSelector, "labelSelector").matchLabels, "matchLabels");
        return (
          term.topologyKey === "kubernetes.io/hostname" && selects(sel as Record<string, string>, labels)
        );
      }),
      "a required anti-affinity on the nodes' own labels, per hostname",
    );
    assert.ok(["Always", undefined].includes(spec(nodePod).restartPolicy as string | undefined));
  });

  test("the node command line parses; the lease points at the etcd members; addresses are the pods' names", () => {
    for (const pod of ["remusd-node-0", "remusd-node-1"]) {
      const { values } = nodeCommand(pod);
      assert.equal(hostPort(values.listen).port, DEFAULT_PORTS.replication);
      assert.equal(hostPort(values.control).port, DEFAULT_PORTS.control);
      assert.equal(values["node-id"], pod);
      assert.equal(values.advertise, `ws://${pod}.remusd-node:${DEFAULT_PORTS.replication}`);
      assert.equal(values["advertise-control"], `${pod}.remusd-node:${DEFAULT_PORTS.control}`);
      assert.notEqual(values.insecure, true);
      const lease = parseLeaseSpec(String(values.lease));
      assert.equal(lease.kind, "etcd");
      if (lease.kind !== "etcd") return;
      const etcd = find("StatefulSet", "remusd-etcd");
      const members = Array.from(
        { length: Number(spec(etcd).replicas) },
        (_, i) => `remusd-etcd-${i}.remusd-etcd`,
      );
      assert.deepEqual(
        lease.endpoints,
        members.map((host) => ({ host, port: 2379 })),
        "every etcd member, by its stable name",
      );
      assert.equal(values["holder-label"], "remusd.io/lease-holder");
    }
  });

  test("etcd: three members that find each other, a client port the lease uses, storage of their own", () => {
    const etcd = find("StatefulSet", "remusd-etcd");
    assert.equal(spec(etcd).replicas, 3);
    const c = obj(arr(spec(template(etcd)).containers, "containers")[0], "etcd container");
    const flags = new Map(
      arr(c.command, "command")
        .slice(1)
        .map((a) => String(a).replace(/^--/, "").split(/=(.*)/s) as [string, string]),
    );
    const initial = String(flags.get("initial-cluster")).split(",");
    assert.deepEqual(
      initial,
      [0, 1, 2].map((i) => `remusd-etcd-${i}=http://remusd-etcd-${i}.remusd-etcd:2380`),
    );
    assert.equal(flags.get("name"), "$(POD_NAME)");
    const svc = spec(find("Service", "remusd-etcd"));
    assert.equal(svc.clusterIP, "None");
    assert.equal(svc.publishNotReadyAddresses, true, "members resolve each other before they are ready");
    assert.ok(arr(spec(etcd).volumeClaimTemplates, "volumeClaimTemplates").length === 1);
    assert.ok(
      Number(flags.get("election-timeout")) * 1.5 < Number(configMap.REMUSD_LEASE_TTL_S) * 1000,
      "etcd's shortest TTL stays below the lease's",
    );
  });

  test("Services: the nodes' stable names, and remusd-primary follows the lease holder's label", () => {
    const labels = labelsOf(nodePod);
    const headless = spec(find("Service", "remusd-node"));
    assert.equal(headless.clusterIP, "None");
    assert.equal(headless.publishNotReadyAddresses, true, "a follower reaches the holder before it is ready");
    assert.ok(selects(headless.selector as Record<string, string>, labels));
    const primary = spec(find("Service", "remusd-primary"));
    const sel = primary.selector as Record<string, string>;
    assert.equal(sel["remusd.io/lease-holder"], "true");
    assert.ok(selects(sel, { ...labels, "remusd.io/lease-holder": "true" }), "selects the holder");
    assert.ok(!selects(sel, { ...labels, "remusd.io/lease-holder": "false" }), "and only the holder");
    const portNames = arr(nodeContainer.ports, "ports").map((p) => obj(p, "port").name);
    for (const s of [headless, primary])
      for (const p of arr(s.ports, "ports")) assert.ok(portNames.includes(obj(p, "port").targetPort));
  });

  test("RBAC: the holder may get and patch the two node pods, nothing else", () => {
    const role = find("Role", "remusd-node");
    const rules = arr(role.rules, "rules").map((r) => obj(r, "rule"));
    assert.deepEqual(rules, [
      {
        apiGroups: [""],
        resources: ["pods"],
        resourceNames: ["remusd-node-0", "remusd-node-1"],
        verbs: ["get", "patch"],
      },
    ]);
    const binding = find("RoleBinding", "remusd-node");
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: "remusd-node" }]);
    assert.equal(spec(nodePod).serviceAccountName, "remusd-node");
    assert.equal(spec(nodePod).automountServiceAccountToken, true);
  });

  test("probes, secrets, Pod Security, and the base's policy and budget cover the nodes", () => {
    const probe = (name: string): Obj => obj(obj(nodeContainer[name], name).httpGet, `${name}.httpGet`);
    assert.equal(probe("readinessProbe").path, READY_PATH);
    assert.equal(probe("livenessProbe").path, HEALTH_PATH);
    const { values } = nodeCommand("remusd-node-0");
    const mounts = arr(nodeContainer.volumeMounts, "volumeMounts").map((m) => obj(m, "mount"));
    for (const flag of ["auth-key-file", "api-token-file"]) {
      const file = String(values[flag]);
      assert.ok(
        mounts.some((m) => file.startsWith(`${m.mountPath}/`) && m.name === "secrets"),
        flag,
      );
    }
    const sc = obj(nodeContainer.securityContext, "securityContext");
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(obj(spec(nodePod).securityContext, "pod securityContext").runAsNonRoot, true);
    const labels = labelsOf(nodePod);
    const pdb = spec(find("PodDisruptionBudget", "remusd-demo"));
    assert.ok(selects(obj(pdb.selector, "selector").matchLabels as Record<string, string>, labels));
    const np = spec(find("NetworkPolicy", "remusd-demo"));
    assert.ok(selects(obj(np.podSelector, "podSelector").matchLabels as Record<string, string>, labels));
    const etcdPolicy = spec(find("NetworkPolicy", "remusd-etcd"));
    const from = arr(obj(arr(etcdPolicy.ingress, "ingress")[0], "ingress").from, "from").map(
      (f) => obj(obj(f, "from").podSelector, "podSelector").matchLabels as Record<string, string>,
    );
    assert.ok(
      from.some((sel) => selects(sel, labels)),
      "the nodes reach etcd's client port",
    );
  });
});

// ---- compose ----

/** compose.yaml with compose.node.yaml on top (compose's merge: mappings merge, command and lists replace). */
function composeMerged(): Obj {
  const base = interpolate(obj(readYaml("deploy/compose.yaml"), "compose.yaml"));
  const over = interpolate(obj(readYaml("deploy/compose.node.yaml"), "compose.node.yaml"));
  return obj(merge(base, over), "merged");
}

describe("compose: the leased pair (compose.node.yaml on compose.yaml)", () => {
  const c = composeMerged();
  const services = obj(c.services, "services");
  const svc = (n: string): Obj => obj(services[n], n);

  test("an etcd and two nodes start; the fixed roles move to a profile", () => {
    for (const n of ["primary", "backup"]) assert.deepEqual(svc(n).profiles, ["fixed-roles"]);
    for (const n of ["etcd", "node-a", "node-b", "vswitch", "prometheus"])
      assert.equal(svc(n).profiles, undefined, `${n} starts by default`);
  });

  test("the nodes' command lines parse; they share the lease and the domain; both restart", () => {
    const parsed = ["node-a", "node-b"].map((n) => {
      const s = svc(n);
      const env = obj(s.environment, `${n} environment`) as Record<string, string>;
      const cmd = parseCommandLine(arr(s.command, "command").map(String), env);
      assert.equal(cmd.values["node-id"], n);
      assert.equal(cmd.values.advertise, `ws://${n}:${DEFAULT_PORTS.replication}`);
      assert.equal(s.restart, "unless-stopped", `${n}: a node rejoins by itself, so it may restart`);
      assert.equal(obj(obj(s.depends_on, "depends_on").etcd, "etcd").condition, "service_healthy");
      return cmd.values;
    });
    const [a, b] = parsed as [Record<string, unknown>, Record<string, unknown>];
    for (const k of ["lease", "lease-ttl-s", "domain-mib", "disk-mib", "heartbeat-ms", "switch", "workload"])
      assert.equal(a[k], b[k], `--${k} is the same on both nodes`);
    const lease = parseLeaseSpec(String(a.lease));
    assert.ok(
      lease.kind === "etcd" && lease.endpoints[0]?.host === "etcd" && lease.endpoints[0].port === 2379,
    );
    const etcdCmd = arr(svc("etcd").command, "etcd command").map(String);
    assert.ok(etcdCmd.includes("--listen-client-urls=http://0.0.0.0:2379"));
    assert.ok(arr(svc("etcd").volumes, "etcd volumes").length > 0, "etcd keeps its data");
  });

  test("Prometheus scrapes both nodes and loads the rules (promtool check config)", () => {
    const cmd = arr(svc("prometheus").command, "prometheus command").map(String);
    assert.ok(cmd.includes("--config.file=/etc/prometheus/prometheus.node.yml"));
    const cfg = obj(readYaml("deploy/prometheus/prometheus.node.yml"), "prometheus.node.yml");
    const job = arr(cfg.scrape_configs, "scrape_configs")
      .map((j) => obj(j, "job"))
      .find((j) => j.job_name === "remusd");
    assert.ok(job);
    const targets = arr(job.static_configs, "static_configs").flatMap((s) =>
      arr(obj(s, "static_config").targets, "targets"),
    );
    assert.deepEqual(targets, ["node-a:7781", "node-b:7781"]);
    const r = runTool("promtool", ["check", "config", "prometheus.node.yml"], {
      cwd: join(DEPLOY, "prometheus"),
      how: "apt-get install prometheus (.ci/run installs it)",
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});

describe("systemd: the node unit", () => {
  test("restarts and starts at boot: a node rejoins as backup by itself", () => {
    const u = parseUnit(readText("deploy/systemd/remusd-node@.service"));
    assert.equal(u.get("Service")?.get("Restart")?.[0], "on-failure");
    assert.ok(u.get("Install")?.get("WantedBy")?.includes("multi-user.target"));
    const env = readText("deploy/systemd/examples/node.env");
    assert.match(env, /^REMUSD_LEASE=etcd:\/\//m);
  });
});
