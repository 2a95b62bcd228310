//! Checks of deploy/: the Kubernetes manifests hang together and run the config they carry,
//! and the dashboard and alert rules name only metrics pgsplit exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgsplit_telemetry::Metrics;
use serde_yaml::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML files of `dir` (not of its subdirectories), by file name.
fn yaml_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v:?}"))
}

/// The manifests of a kustomization directory, by kind, after checking that `resources` lists
/// exactly the directory's other YAML files and that each is one object with a name.
fn manifests(dir: &Path) -> Vec<Value> {
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut present = yaml_files(dir);
    present.remove("kustomization.yaml");
    assert_eq!(listed, present, "{}: resources vs files", dir.display());
    listed
        .iter()
        .map(|name| {
            let doc = yaml(&dir.join(name));
            for key in ["apiVersion", "kind"] {
                str_at(&doc, &[key]);
            }
            str_at(&doc, &["metadata", "name"]);
            doc
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn kubernetes_manifests_run_the_config_they_carry() {
    let docs = manifests(&deploy_dir().join("k8s"));
    let config_map = of_kind(&docs, "ConfigMap");
    let secret = of_kind(&docs, "Secret");
    let deployment = of_kind(&docs, "Deployment");
    let service = of_kind(&docs, "Service");
    let pdb = of_kind(&docs, "PodDisruptionBudget");

    // The config validates, with `${NAME}` values from the Secret only.
    let env = secret["stringData"].as_mapping().unwrap();
    let lookup = |name: &str| env.get(name).and_then(Value::as_str).map(str::to_owned);
    let text = str_at(config_map, &["data", "pgsplit.yaml"]);
    let config = pgsplit_config::parse_with_env(text, "deploy/k8s/configmap.yaml", &lookup)
        .unwrap_or_else(|e| panic!("the ConfigMap's pgsplit.yaml: {e}"));
    assert!(
        config.listen.starts_with("0.0.0.0:"),
        "reachable from the Service"
    );
    assert!(
        config.admin.listen.starts_with("0.0.0.0:"),
        "reachable from probes"
    );

    let pod = &deployment["spec"]["template"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(&pod["metadata"]["labels"], selector);
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let spec = &pod["spec"];
    let containers = spec["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The config file is the mounted ConfigMap, mounted as a directory so updates arrive.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mount = &c["volumeMounts"][0];
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees updates"
    );
    let config_path = format!("{}/pgsplit.yaml", str_at(mount, &["mountPath"]));
    assert_eq!(args, ["--config", config_path.as_str()]);
    let volume = &spec["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );

    // Ports: the container's are the config's, and the Service and probes use them by name.
    let container_port = |name: &str| {
        c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("container port {name}"))
    };
    assert_eq!(container_port("postgres"), port_of(&config.listen));
    assert_eq!(container_port("admin"), port_of(&config.admin.listen));
    for port in service["spec"]["ports"].as_sequence().unwrap() {
        container_port(str_at(port, &["targetPort"]));
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(str_at(c, &[probe, "httpGet", "path"]), path);
        assert_eq!(str_at(c, &[probe, "httpGet", "port"]), "admin");
    }

    // SIGTERM drains within shutdown_timeout, after the preStop pause, before the kill.
    let pause: u64 = c["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown = config.shutdown_timeout.as_secs();
    assert!(
        pause + shutdown < grace,
        "preStop {pause}s + shutdown_timeout {shutdown}s must end before the grace period {grace}s"
    );
    // The readiness threshold outlasts a failover's write wait (see the manifest's comment).
    let period = c["readinessProbe"]["periodSeconds"].as_u64().unwrap();
    let failures = c["readinessProbe"]["failureThreshold"].as_u64().unwrap();
    assert!(period * failures > config.failover.write_wait.as_secs());
    // The image runs as the user the Dockerfile creates.
    let dockerfile = read(&deploy_dir().join("docker/Dockerfile"));
    let uid = spec["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(
        dockerfile.contains(&format!("USER {uid}")),
        "Dockerfile USER {uid}"
    );
    assert!(dockerfile.contains(&format!("--uid {uid}")));
}

/// Every `pgsplit_...` name in `text`, histogram series suffixes taken off when what remains is
/// a histogram family.
fn metric_names(text: &str, families: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("pgsplit_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| families.contains(*b)))
            .unwrap_or(name);
        out.insert(base.to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_alerts_name_only_exported_metrics() {
    let families: BTreeSet<String> = Metrics::new().family_names().into_iter().collect();

    let path = deploy_dir().join("grafana/pgsplit-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("pgsplit_"), "{expr}");
            exprs.push(expr.to_owned());
        }
    }
    let rules = yaml(&deploy_dir().join("k8s/monitoring/prometheusrule.yaml"));
    let groups = &rules["spec"]["groups"];
    for group in groups.as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push(str_at(rule, &["expr"]).to_owned());
        }
    }
    let used = metric_names(&exprs.join("\n"), &families);
    assert!(used.len() > 10, "{used:?}");
    let unknown: Vec<&String> = used.difference(&families).collect();
    assert!(unknown.is_empty(), "not exported by pgsplit: {unknown:?}");

    // The rules pass promtool (the Prometheus Operator's spec.groups is a rules file's body).
    let Some(promtool) = pgsplit_testkit::tools::promtool() else {
        assert!(
            !pgsplit_testkit::cluster::cluster_required(),
            "promtool not found: install Debian's `prometheus` package (`cargo xtask install` does)"
        );
        eprintln!("skipping promtool check rules: promtool not found");
        return;
    };
    let mut file = serde_yaml::Mapping::new();
    file.insert("groups".into(), groups.clone());
    let dir = std::env::temp_dir().join(format!("pgsplit-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_file = dir.join("rules.yaml");
    std::fs::write(&rules_file, serde_yaml::to_string(&file).unwrap()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metric_names_strip_histogram_suffixes_of_histograms_only() {
    let families: BTreeSet<String> = ["pgsplit_a_seconds".to_owned()].into();
    let names = metric_names(
        "rate(pgsplit_a_seconds_bucket[5m]) / pgsplit_b_count + pgsplit_c{x=\"pgsplit_d\"}",
        &families,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "pgsplit_a_seconds",
            "pgsplit_b_count",
            "pgsplit_c",
            "pgsplit_d"
        ]
    );
}
